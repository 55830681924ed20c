//! NIfTI inputs: NIfTI-2 read and write (including a header built byte by byte here), and
//! hostile files built in the test (a FIFO, non-finite voxels and header numbers, a small
//! `.nii.gz` claiming a huge volume). Each hostile file must give a typed error naming it.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use masam_testkit::TempDir;
use masam_volume::io::nifti::NiftiReader;
use masam_volume::io::writer::NiftiWriter;
use masam_volume::io::{read_volume, NiftiVersion, ReadLimits};
use masam_volume::{Affine, Volume, VolumeError};
use ndarray::Array3;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn oblique() -> Affine {
    let (c, s) = (0.6f64, 0.8f64);
    [
        [-0.5 * c, 0.75 * s, 0.0, 12.5],
        [0.5 * s, 0.75 * c, 0.0, -7.25],
        [0.0, 0.0, 2.5, 30.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

fn sample() -> Volume<f32> {
    let data = Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z * 20 + y * 5 + x) as f32 - 9.5);
    let mut v = Volume::with_spacing(data, [0.5, 0.75, 2.5]);
    v.affine = oblique();
    v
}

/// The NIfTI-1 bytes of `v` (f32).
fn nifti1(dir: &TempDir, v: &Volume<f32>) -> Vec<u8> {
    let p = dir.join("src.nii");
    NiftiWriter::new().write(&p, v).unwrap();
    std::fs::read(p).unwrap()
}

fn read_err(p: &Path) -> VolumeError {
    let e = NiftiReader::new().read::<f32>(p).unwrap_err();
    assert!(e.to_string().contains(&p.display().to_string()), "{e}");
    e
}

#[test]
fn nifti2_round_trips_and_nifti1_stays_the_default() {
    let d = TempDir::new("nifti2-roundtrip");
    let v = sample();
    for (name, version) in [
        ("one.nii", None),
        ("two.nii", Some(NiftiVersion::Two)),
        ("two.nii.gz", Some(NiftiVersion::Two)),
    ] {
        let p = d.join(name);
        let mut w = NiftiWriter::new();
        if let Some(version) = version {
            w = w.version(version);
        }
        w.write(&p, &v).unwrap();
        let sizeof_hdr = if version.is_some() { 540 } else { 348 };
        let raw = NiftiReader::new().read_header(&p).unwrap();
        assert_eq!(raw.version, version.unwrap_or(NiftiVersion::One));
        if !name.ends_with(".gz") {
            let b = std::fs::read(&p).unwrap();
            assert_eq!(i32::from_le_bytes([b[0], b[1], b[2], b[3]]), sizeof_hdr);
        }
        let back = NiftiReader::new().read::<f32>(&p).unwrap();
        assert_eq!(back.volume.data, v.data, "{name}");
        assert!(back.volume.affine_max_abs_diff(&v.affine) < 1e-6, "{name}");
        // written again on the grid of what was read (as NIfTI-1, the default: f32 geometry)
        let again = d.join(format!("again_{name}"));
        NiftiWriter::new()
            .reference(&back.geometry)
            .write(&again, &back.volume.map(|x| *x as i16))
            .unwrap();
        let labels = NiftiReader::new().read::<i16>(&again).unwrap();
        assert_eq!(labels.geometry.version, NiftiVersion::One);
        assert!(
            labels.volume.affine_max_abs_diff(&back.volume.affine) < 1e-6,
            "{name}"
        );
    }
    // NIfTI-2 exactly keeps an f64 affine that NIfTI-1 would round to f32.
    let mut fine = sample();
    fine.affine[0][3] = 12.345_678_912_345;
    let p = d.join("fine.nii");
    NiftiWriter::new()
        .version(NiftiVersion::Two)
        .write(&p, &fine)
        .unwrap();
    let back = NiftiReader::new().read::<f32>(&p).unwrap().volume;
    assert_eq!(back.affine[0][3], 12.345_678_912_345);
}

#[test]
fn a_volume_too_long_for_nifti1_is_written_as_nifti2() {
    let d = TempDir::new("nifti2-long");
    let v = Volume::with_spacing(
        Array3::from_shape_fn((1, 1, 40_000), |(_, _, x)| (x % 7) as u8),
        [1.0; 3],
    );
    let p = d.join("long.nii.gz");
    NiftiWriter::new().write(&p, &v).unwrap();
    let back = NiftiReader::new().read::<u8>(&p).unwrap();
    assert_eq!(back.geometry.version, NiftiVersion::Two);
    assert_eq!(back.geometry.dim[1], 40_000);
    assert_eq!(back.volume.data, v.data);
    let e = NiftiWriter::new()
        .version(NiftiVersion::One)
        .write(d.join("no.nii"), &v)
        .unwrap_err();
    assert!(matches!(e, VolumeError::InvalidArgument(_)), "{e}");
}

/// A NIfTI-2 header written field by field (not by this crate's writer).
fn hand_built_nifti2(big_endian: bool, sform: bool) -> Vec<u8> {
    let mut h = vec![0u8; 544];
    let put = |h: &mut Vec<u8>, off: usize, le: &[u8]| {
        let mut b = le.to_vec();
        if big_endian {
            b.reverse();
        }
        h[off..off + b.len()].copy_from_slice(&b);
    };
    put(&mut h, 0, &540i32.to_le_bytes());
    h[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
    put(&mut h, 12, &4i16.to_le_bytes()); // int16
    put(&mut h, 14, &16i16.to_le_bytes());
    for (i, d) in [3i64, 2, 3, 4, 1, 1, 1, 1].iter().enumerate() {
        put(&mut h, 16 + 8 * i, &d.to_le_bytes());
    }
    for (i, p) in [1.0f64, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0]
        .iter()
        .enumerate()
    {
        put(&mut h, 104 + 8 * i, &p.to_le_bytes());
    }
    put(&mut h, 168, &544i64.to_le_bytes());
    put(&mut h, 176, &2.0f64.to_le_bytes()); // scl_slope
    put(&mut h, 184, &(-1.0f64).to_le_bytes()); // scl_inter
    put(&mut h, 344, &1i32.to_le_bytes()); // qform_code
    put(&mut h, 348, &(if sform { 2i32 } else { 0 }).to_le_bytes());
    // qform: 90° about z (b = c = 0, d = sin 45°), offsets
    put(&mut h, 368, &std::f64::consts::FRAC_1_SQRT_2.to_le_bytes());
    for (i, o) in [10.0f64, 20.0, 30.0].iter().enumerate() {
        put(&mut h, 376 + 8 * i, &o.to_le_bytes());
    }
    let srow = [
        [-2.0f64, 0.0, 0.0, 1.5],
        [0.0, 3.0, 0.0, -2.5],
        [0.0, 0.0, 4.0, 3.5],
    ];
    for (r, row) in srow.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            put(&mut h, 400 + 32 * r + 8 * c, &v.to_le_bytes());
        }
    }
    put(&mut h, 500, &10i32.to_le_bytes()); // mm, s
    for i in 0..24i16 {
        let mut b = i.to_le_bytes().to_vec();
        if big_endian {
            b.reverse();
        }
        h.extend_from_slice(&b);
    }
    h
}

#[test]
fn a_hand_built_nifti2_header_reads_with_the_right_affine() {
    let d = TempDir::new("nifti2-hand");
    for big in [false, true] {
        // sform (code 2) wins over the qform
        let p = d.join(format!("s{big}.nii"));
        std::fs::write(&p, hand_built_nifti2(big, true)).unwrap();
        let img = NiftiReader::new().read::<f32>(&p).unwrap();
        let want: Affine = [
            [-2.0, 0.0, 0.0, 1.5],
            [0.0, 3.0, 0.0, -2.5],
            [0.0, 0.0, 4.0, 3.5],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(img.volume.affine, want, "big endian {big}");
        assert_eq!(img.volume.spacing, [2.0, 3.0, 4.0]);
        assert_eq!(img.volume.shape_zyx(), [4, 3, 2]);
        // voxel (x=1, y=2, z=3) is the 1 + 2·2 + 3·6 = 23rd value, scaled 2·v − 1
        assert_eq!(img.volume.data[[3, 2, 1]], 2.0 * 23.0 - 1.0);
        assert_eq!(img.geometry.big_endian, big);
        // qform only: the rotation about z by 90° with pixdim zooms and the offsets
        let p = d.join(format!("q{big}.nii"));
        std::fs::write(&p, hand_built_nifti2(big, false)).unwrap();
        let a = NiftiReader::new().read::<f32>(&p).unwrap().volume.affine;
        let want: Affine = [
            [0.0, -3.0, 0.0, 10.0],
            [2.0, 0.0, 0.0, 20.0],
            [0.0, 0.0, 4.0, 30.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        for r in 0..4 {
            for c in 0..4 {
                assert!((a[r][c] - want[r][c]).abs() < 1e-12, "{a:?}");
            }
        }
    }
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_blocking() {
    let d = TempDir::new("nifti-fifo");
    let fifo = d.join("x.nii");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let t = Instant::now();
    let e = read_err(&fifo);
    assert!(
        matches!(e, VolumeError::Fs(masam_fs::FsError::NotRegularFile { .. })),
        "{e}"
    );
    assert!(matches!(read_volume(&fifo), Err(VolumeError::Fs(_))));
    assert!(NiftiReader::new().read_header(&fifo).is_err());
    // A folder named like a file.
    let folder = d.join("folder.nii.gz");
    std::fs::create_dir_all(&folder).unwrap();
    assert!(matches!(read_err(&folder), VolumeError::Fs(_)));
    assert!(t.elapsed().as_secs_f64() < 5.0);
}

/// `sample()` as NIfTI-1 float64 bytes with voxel 7 set to `value`.
fn float64_with(value: f64) -> Vec<u8> {
    let d = TempDir::new("nifti-f64-src");
    let mut v = sample().map(|x| *x as f64);
    v.data.as_slice_mut().unwrap()[7] = value;
    let p = d.join("f.nii");
    NiftiWriter::new().write(&p, &v).unwrap();
    std::fs::read(p).unwrap()
}

#[test]
fn float64_values_beyond_f32_are_not_silently_infinite() {
    let d = TempDir::new("nifti-1e300");
    let p = d.join("big.nii.gz");
    std::fs::write(&p, gz(&float64_with(1e300))).unwrap();
    match read_err(&p) {
        VolumeError::NonFinite {
            count,
            first,
            value,
            ..
        } => {
            assert_eq!((count, first, value), (1, 7, 1e300));
        }
        e => panic!("{e}"),
    }
    // As f64 the value is finite and reads.
    let v = NiftiReader::new().read::<f64>(&p).unwrap().volume;
    assert_eq!(v.data.as_slice().unwrap()[7], 1e300);
    std::fs::write(&p, gz(&float64_with(f64::NEG_INFINITY))).unwrap();
    assert!(matches!(
        NiftiReader::new().read::<f64>(&p),
        Err(VolumeError::NonFinite { count: 1, .. })
    ));
}

/// Writes `bytes` after `edit` to `name` and returns the error of reading it as f32.
fn edited(d: &TempDir, base: &[u8], name: &str, edit: impl Fn(&mut Vec<u8>)) -> VolumeError {
    let mut b = base.to_vec();
    edit(&mut b);
    let p = d.join(name);
    std::fs::write(&p, &b).unwrap();
    read_err(&p)
}

fn put_f32(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn non_finite_header_numbers_are_refused() {
    let d = TempDir::new("nifti-header-numbers");
    let base = nifti1(&d, &sample());
    // scl_slope 1e38 × voxel values up to 50: infinite once scaled
    match edited(&d, &base, "slope_big.nii", |b| put_f32(b, 112, 1e38)) {
        VolumeError::NonFinite { count, .. } => assert!(count > 40, "{count}"),
        e => panic!("{e}"),
    }
    let cases: [(&str, usize, f32, &str); 8] = [
        ("slope_nan.nii", 112, f32::NAN, "scl_slope"),
        ("inter_inf.nii", 116, f32::INFINITY, "scl_inter"),
        ("pixdim_zero.nii", 80, 0.0, "pixdim[1]"),
        ("pixdim_neg.nii", 84, -0.75, "pixdim[2]"),
        ("pixdim_nan.nii", 88, f32::NAN, "pixdim[3]"),
        ("pixdim_inf.nii", 88, f32::INFINITY, "pixdim[3]"),
        ("srow_nan.nii", 280, f32::NAN, "srow"),
        ("srow_singular.nii", 296 + 4, 0.0, "determinant"),
    ];
    for (name, off, value, field) in cases {
        let e = edited(&d, &base, name, |b| {
            put_f32(b, off, value);
            if name == "srow_singular.nii" {
                // y column of the sform zeroed: the affine has no inverse
                put_f32(b, 280 + 4, 0.0);
                put_f32(b, 312 + 4, 0.0);
            }
        });
        match &e {
            VolumeError::InvalidValue { field: f, .. } => assert!(f.contains(field), "{name}: {e}"),
            _ => panic!("{name}: {e}"),
        }
    }
}

#[test]
fn a_small_gzip_claiming_a_huge_volume_fails_fast_and_small() {
    let d = TempDir::new("nifti-gz-claims");
    let base = nifti1(&d, &sample());
    // ~260 KB of incompressible data after the header.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..260_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let with_dims = |dims: [i16; 3], datatype: i16, bitpix: i16| {
        let mut b = base[..352].to_vec();
        for (i, v) in dims.iter().enumerate() {
            b[42 + 2 * i..44 + 2 * i].copy_from_slice(&v.to_le_bytes());
        }
        b[70..72].copy_from_slice(&datatype.to_le_bytes());
        b[72..74].copy_from_slice(&bitpix.to_le_bytes());
        b.extend_from_slice(&noise);
        gz(&b)
    };
    let t = Instant::now();
    // 2^40 voxels: over the limits.
    let p = d.join("tera.nii.gz");
    std::fs::write(&p, with_dims([16384, 8192, 8192], 2, 8)).unwrap();
    assert!(std::fs::metadata(&p).unwrap().len() < 300_000);
    assert!(matches!(
        read_err(&p),
        VolumeError::TooLarge { .. } | VolumeError::TooManyVoxels { .. }
    ));
    // 0.94 Gi voxels of u8: within the limits, but more than 260 KB of gzip can hold.
    std::fs::write(&p, with_dims([1024, 1024, 900], 2, 8)).unwrap();
    match read_err(&p) {
        VolumeError::ClaimExceedsData {
            claimed, available, ..
        } => {
            assert_eq!(claimed, 352 + 1024 * 1024 * 900);
            assert!(available < 400 << 20, "{available}");
        }
        e => panic!("{e}"),
    }
    // 64 Mi voxels: believable from the size, but the data ends after 260 KB.
    std::fs::write(&p, with_dims([400, 400, 400], 2, 8)).unwrap();
    match read_err(&p) {
        VolumeError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof)
        }
        e => panic!("{e}"),
    }
    // The same claim uncompressed is refused from the file size, before reading.
    let mut plain = base[..352].to_vec();
    plain[42..44].copy_from_slice(&400i16.to_le_bytes());
    plain[44..46].copy_from_slice(&400i16.to_le_bytes());
    plain[46..48].copy_from_slice(&400i16.to_le_bytes());
    let p = d.join("plain.nii");
    std::fs::write(&p, &plain).unwrap();
    assert!(matches!(read_err(&p), VolumeError::ClaimExceedsData { .. }));
    assert!(t.elapsed().as_secs_f64() < 10.0, "must fail fast");
    // A caller's tighter limits.
    let ok = d.join("ok.nii");
    std::fs::write(&ok, &base).unwrap();
    let limits = ReadLimits {
        max_voxels: 10,
        ..ReadLimits::default()
    };
    assert!(matches!(
        NiftiReader::new().limits(limits).read::<f32>(&ok),
        Err(VolumeError::TooManyVoxels { voxels: 60, .. })
    ));
}

#[test]
fn bytes_in_memory_read_like_the_file() {
    let d = TempDir::new("nifti-bytes");
    let b = nifti1(&d, &sample());
    for bytes in [b.clone(), gz(&b)] {
        let img = NiftiReader::new()
            .read_bytes::<f32>(Path::new("mem.nii"), &bytes)
            .unwrap();
        assert_eq!(img.volume.data, sample().data);
    }
    let e = NiftiReader::new()
        .read_bytes::<f32>(Path::new("cut.nii"), &b[..400])
        .unwrap_err();
    assert!(e.to_string().starts_with("cut.nii: "), "{e}");
}

#[test]
fn a_2d_file_with_an_unset_third_voxel_size_reads() {
    let d = TempDir::new("nifti-2d");
    let mut b = nifti1(
        &d,
        &Volume::with_spacing(Array3::from_elem((1, 4, 5), 3.0f32), [0.5, 0.5, 1.0]),
    );
    b[40..42].copy_from_slice(&2i16.to_le_bytes()); // dim[0] = 2
    b[46..48].copy_from_slice(&(-7i16).to_le_bytes()); // dim[3]: ignored
    put_f32(&mut b, 88, 0.0); // pixdim[3]: ignored
    b[254..256].copy_from_slice(&0i16.to_le_bytes()); // sform_code 0: the qform is used
    let p = d.join("flat.nii");
    std::fs::write(&p, &b).unwrap();
    let img = NiftiReader::new().read::<f32>(&p).unwrap();
    assert_eq!(img.volume.shape_zyx(), [1, 4, 5]);
    assert_eq!(img.volume.spacing, [0.5, 0.5, 1.0]);
    assert_eq!(img.volume.affine[2][2], 1.0);
}
