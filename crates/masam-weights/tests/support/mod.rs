//! Builders of `torch.save`-like zip archives and pickle programs for the tests.

#![allow(dead_code)]

/// CRC-32 (IEEE) of `data`, as zip stores it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A stored zip archive of `files`; `claimed(i)` overrides the uncompressed size written in
/// both headers of entry `i` (to build lying archives).
pub fn zip_with(files: &[(String, Vec<u8>)], claimed: impl Fn(usize) -> Option<u32>) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (i, (name, data)) in files.iter().enumerate() {
        let (crc, offset, n) = (crc32(data), out.len() as u32, data.len() as u32);
        let size = claimed(i).unwrap_or(n);
        let mut common = Vec::new();
        for v in [20u16, 0, 0, 0, 0x21] {
            common.extend(v.to_le_bytes());
        }
        common.extend(crc.to_le_bytes());
        common.extend(size.to_le_bytes());
        common.extend(size.to_le_bytes());
        common.extend((name.len() as u16).to_le_bytes());
        common.extend(0u16.to_le_bytes());
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend(&common);
        out.extend(name.as_bytes());
        out.extend(data);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes());
        central.extend(&common);
        for v in [0u16, 0, 0] {
            central.extend(v.to_le_bytes());
        }
        central.extend(0u32.to_le_bytes());
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let (cd_offset, cd_size) = (out.len() as u32, central.len() as u32);
    out.extend(central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, files.len() as u16, files.len() as u16] {
        out.extend(v.to_le_bytes());
    }
    out.extend(cd_size.to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// A stored zip archive of `files`.
pub fn zip(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    zip_with(files, |_| None)
}

/// Appends a BINUNICODE string.
pub fn unicode(p: &mut Vec<u8>, s: &str) {
    p.push(b'X');
    p.extend((s.len() as u32).to_le_bytes());
    p.extend(s.as_bytes());
}

/// Appends a BININT.
pub fn int(p: &mut Vec<u8>, v: i64) {
    p.push(b'J');
    p.extend((v as i32).to_le_bytes());
}

fn int_tuple(p: &mut Vec<u8>, v: &[i64]) {
    p.push(b'(');
    for &x in v {
        int(p, x);
    }
    p.push(b't');
}

/// One tensor record as PyTorch pickles it.
pub struct Record<'a> {
    pub name: &'a str,
    pub storage_class: &'a str,
    pub key: &'a str,
    pub storage_numel: i64,
    pub offset: i64,
    pub shape: Vec<i64>,
    pub stride: Vec<i64>,
}

impl<'a> Record<'a> {
    /// A contiguous f32 tensor of `shape` on storage `key`.
    pub fn f32(name: &'a str, key: &'a str, shape: &[i64]) -> Self {
        let mut stride = vec![1i64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1];
        }
        Self {
            name,
            storage_class: "FloatStorage",
            key,
            storage_numel: shape.iter().product(),
            offset: 0,
            shape: shape.to_vec(),
            stride,
        }
    }
}

/// `_rebuild_tensor_v2(persid storage, offset, size, stride, False, OrderedDict())`, wrapped in
/// `_rebuild_parameter` when `parameter`.
pub fn tensor(p: &mut Vec<u8>, r: &Record, parameter: bool) {
    if parameter {
        p.extend(b"ctorch._utils\n_rebuild_parameter\n");
    }
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    p.push(b'(');
    unicode(p, "storage");
    p.extend(format!("ctorch\n{}\n", r.storage_class).as_bytes());
    unicode(p, r.key);
    unicode(p, "cpu");
    int(p, r.storage_numel);
    p.extend(b"tQ");
    int(p, r.offset);
    int_tuple(p, &r.shape);
    int_tuple(p, &r.stride);
    p.push(0x89);
    p.extend(b"ccollections\nOrderedDict\n)R");
    p.extend(b"tR");
    if parameter {
        p.push(0x88);
        p.extend(b"ccollections\nOrderedDict\n)R");
        p.push(0x87);
        p.push(b'R');
    }
}

/// The pickle of `OrderedDict(name -> tensor)`, protocol 2, with memo puts as PyTorch writes.
pub fn state_dict_pickle(records: &[Record]) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    p.extend(b"ccollections\nOrderedDict\nq\x00)Rq\x01(");
    for (i, r) in records.iter().enumerate() {
        unicode(&mut p, r.name);
        tensor(&mut p, r, i % 2 == 1);
    }
    p.extend(b"u}q\x02X\x09\x00\x00\x00_metadatah\x02sb.");
    p
}

/// A whole `.pth`: `archive/data.pkl`, `archive/data/{key}` for each `(key, bytes)`, and
/// `archive/version`.
pub fn pth(pickle: Vec<u8>, storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut files = vec![("archive/data.pkl".to_string(), pickle)];
    for (k, b) in storages {
        files.push((format!("archive/data/{k}"), b.clone()));
    }
    files.push(("archive/version".to_string(), b"3\n".to_vec()));
    zip(&files)
}

/// Little-endian bytes of `v`.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A valid two-tensor `.pth` (a 2×3 weight on storage 0 and a bias of 3 on storage 1).
pub fn small_pth() -> Vec<u8> {
    let w: Vec<f32> = (0..6).map(|v| v as f32).collect();
    let b = [0.5f32, -1.0, 2.0];
    let records = [
        Record::f32("lin.weight", "0", &[2, 3]),
        Record::f32("lin.bias", "1", &[3]),
    ];
    pth(
        state_dict_pickle(&records),
        &[("0", f32_bytes(&w)), ("1", f32_bytes(&b))],
    )
}

/// A safetensors file of `(name, dtype string, shape, bytes)` with offsets in order.
pub fn safetensors(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut header = String::from("{");
    let mut data: Vec<u8> = Vec::new();
    for (i, (name, dtype, shape, bytes)) in tensors.iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        let start = data.len();
        data.extend(bytes);
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{start},{}]}}",
            data.len()
        ));
    }
    header.push('}');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    out
}
