//! A bounded, iterative pickle interpreter that builds only plain data, tensors and storages.
//!
//! It never recurses over the program (one loop over the opcodes), limits the nesting of every
//! container and of MARKs, charges every object created or copied to a budget proportional to
//! the program's length, and resolves globals only through [`Global::lookup`]'s allow-list.

use std::collections::HashMap;
use std::rc::Rc;

use super::opcode::describe;
use super::value::{Global, Map, Seq, StorageRef, TensorRecord, Value};
use crate::Limits;

/// Why the interpreter stopped: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) offset: usize,
    pub(crate) opcode: String,
    pub(crate) reason: String,
}

type Step<T> = std::result::Result<T, String>;

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    budget: u64,
    limits: &'a Limits,
}

/// Runs the pickle program `bytes` and returns the object it leaves on STOP.
pub(crate) fn run(bytes: &[u8], limits: &Limits) -> Result<Value, Fault> {
    let mut m = Machine {
        bytes,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        budget: limits.pickle_budget(bytes.len()),
        limits,
    };
    loop {
        let at = m.pos;
        let Some(&op) = bytes.get(at) else {
            return Err(Fault {
                offset: at,
                opcode: "end of data".into(),
                reason: "the program ends without STOP".into(),
            });
        };
        m.pos += 1;
        match m.step(op) {
            Ok(true) => {
                let out = m.pop().map_err(|reason| Fault {
                    offset: at,
                    opcode: describe(op),
                    reason,
                })?;
                return Ok(out);
            }
            Ok(false) => {}
            Err(reason) => {
                return Err(Fault {
                    offset: at,
                    opcode: describe(op),
                    reason,
                })
            }
        }
    }
}

impl<'a> Machine<'a> {
    fn charge(&mut self, units: u64) -> Step<()> {
        self.budget = self.budget.checked_sub(units).ok_or_else(|| {
            format!(
                "over the interpreter budget ({} units for {} bytes of program)",
                self.limits.pickle_budget(self.bytes.len()),
                self.bytes.len()
            )
        })?;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("argument of {n} bytes runs past the end of the program"))?;
        let bytes: &'a [u8] = self.bytes;
        let s = &bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Step<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Step<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Step<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Step<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn len_arg(&mut self, n: u64) -> Step<usize> {
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len() - self.pos)
            .ok_or_else(|| format!("length {n} runs past the end of the program"))
    }

    fn line(&mut self) -> Step<&'a str> {
        let bytes: &'a [u8] = self.bytes;
        let rest = &bytes[self.pos..];
        let n = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .ok_or("no newline within 256 bytes")?;
        self.pos += n + 1;
        std::str::from_utf8(&rest[..n]).map_err(|_| "not UTF-8".to_string())
    }

    fn push(&mut self, v: Value) -> Step<()> {
        self.charge(1)?;
        if v.depth() > self.limits.max_pickle_depth {
            return Err(format!(
                "objects nested deeper than {} levels",
                self.limits.max_pickle_depth
            ));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Step<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("the stack is empty".into());
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&mut self) -> Step<&mut Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("the stack is empty".into());
        }
        Ok(self.stack.last_mut().expect("checked above"))
    }

    fn pop_mark(&mut self) -> Step<Vec<Value>> {
        let mark = self.marks.pop().ok_or("no MARK on the stack")?;
        Ok(self.stack.split_off(mark))
    }

    /// A copy of `v` for DUP or the memo, charged to the budget (lists and dicts are copied
    /// element by element; everything else is shared).
    fn copy(&mut self, v: &Value) -> Step<Value> {
        // The work is at most the object's size, and the object is at most max_pickle_depth
        // deep, so this recursion is bounded.
        Ok(match v {
            Value::List(s) => {
                self.charge(s.items.len() as u64)?;
                let mut items = Vec::with_capacity(s.items.len());
                for it in &s.items {
                    items.push(self.copy(it)?);
                }
                Value::List(Seq {
                    items,
                    depth: s.depth,
                })
            }
            Value::Dict(m) => {
                self.charge(2 * m.entries.len() as u64)?;
                let mut entries = Vec::with_capacity(m.entries.len());
                for (k, x) in &m.entries {
                    entries.push((self.copy(k)?, self.copy(x)?));
                }
                Value::Dict(Map {
                    entries,
                    depth: m.depth,
                })
            }
            other => {
                self.charge(1)?;
                other.clone()
            }
        })
    }

    fn seq(items: Vec<Value>) -> Seq {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        Seq { items, depth }
    }

    fn check_depth(&self, depth: usize) -> Step<()> {
        if depth > self.limits.max_pickle_depth {
            return Err(format!(
                "objects nested deeper than {} levels",
                self.limits.max_pickle_depth
            ));
        }
        Ok(())
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Step<()> {
        let add = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        self.check_depth(add)?;
        match self.top()? {
            Value::List(s) => {
                s.depth = s.depth.max(add);
                s.items.extend(items);
                Ok(())
            }
            other => Err(format!("APPEND to a {}, not a list", other.kind())),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> Step<()> {
        if !items.len().is_multiple_of(2) {
            return Err("odd number of items for a dict".into());
        }
        let add = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        self.check_depth(add)?;
        match self.top()? {
            Value::Dict(m) => {
                m.depth = m.depth.max(add);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    m.entries.push((k, v));
                }
                Ok(())
            }
            other => Err(format!("SETITEM on a {}, not a dict", other.kind())),
        }
    }

    fn global(&mut self, module: &str, name: &str) -> Step<()> {
        let g = Global::lookup(module, name).ok_or_else(|| {
            format!("global `{module}.{name}` is not allowed (only tensors are rebuilt)")
        })?;
        self.push(Value::Global(g))
    }

    fn memo_put(&mut self, key: u32) -> Step<()> {
        let v = self.top()?.clone();
        let v = self.copy(&v)?;
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Step<()> {
        let v = self
            .memo
            .get(&key)
            .ok_or_else(|| format!("memo entry {key} was never stored"))?
            .clone();
        let v = self.copy(&v)?;
        self.push(v)
    }

    /// Executes one opcode; `Ok(true)` on STOP.
    fn step(&mut self, op: u8) -> Step<bool> {
        match op {
            0x80 => {
                let proto = self.u8()?;
                if proto > 5 {
                    return Err(format!("pickle protocol {proto} is not supported"));
                }
            }
            0x95 => {
                self.u64()?;
            }
            b'.' => return Ok(true),
            b'(' => {
                self.charge(1)?;
                if self.marks.len() >= self.limits.max_pickle_depth {
                    return Err(format!(
                        "MARKs nested deeper than {} levels",
                        self.limits.max_pickle_depth
                    ));
                }
                self.marks.push(self.stack.len());
            }
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                let v = self.copy(&v)?;
                self.push(v)?;
            }
            b'N' => self.push(Value::None)?,
            0x88 | 0x89 => self.push(Value::Bool)?,
            b'J' => {
                let v = self.u32()? as i32;
                self.push(Value::Int(v.into()))?
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(v.into()))?
            }
            b'M' => {
                let v = self.u16()?;
                self.push(Value::Int(v.into()))?
            }
            0x8a => {
                let n = self.u8()? as usize;
                let b = self.take(n)?;
                if n > 8 {
                    return Err(format!("integer of {n} bytes is too large"));
                }
                let mut a = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                    [0xffu8; 8]
                } else {
                    [0u8; 8]
                };
                a[..n].copy_from_slice(b);
                self.push(Value::Int(i64::from_le_bytes(a)))?
            }
            b'G' => {
                self.take(8)?;
                self.push(Value::Float)?
            }
            b'X' | 0x8c | 0x8d => {
                let n = match op {
                    b'X' => self.u32()?.into(),
                    0x8c => self.u8()?.into(),
                    _ => self.u64()?,
                };
                let n = self.len_arg(n)?;
                let s = std::str::from_utf8(self.take(n)?)
                    .map_err(|_| "string is not UTF-8".to_string())?;
                let s: Rc<str> = Rc::from(s);
                self.push(Value::Str(s))?
            }
            b'B' | b'C' | 0x8e => {
                let n = match op {
                    b'B' => self.u32()?.into(),
                    b'C' => self.u8()?.into(),
                    _ => self.u64()?,
                };
                let n = self.len_arg(n)?;
                self.take(n)?;
                self.push(Value::Bytes)?
            }
            b')' => self.push(Value::Tuple(Rc::new(Seq {
                items: Vec::new(),
                depth: 1,
            })))?,
            b't' => {
                let items = self.pop_mark()?;
                self.push(Value::Tuple(Rc::new(Self::seq(items))))?
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(Value::Tuple(Rc::new(Self::seq(items))))?
            }
            b']' => self.push(Value::List(Seq {
                items: Vec::new(),
                depth: 1,
            }))?,
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Value::List(Self::seq(items)))?
            }
            b'a' => {
                let v = self.pop()?;
                self.extend_list(vec![v])?
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend_list(items)?
            }
            b'}' => self.push(Value::Dict(Map {
                entries: Vec::new(),
                depth: 1,
            }))?,
            b'd' => {
                let items = self.pop_mark()?;
                self.push(Value::Dict(Map {
                    entries: Vec::new(),
                    depth: 1,
                }))?;
                self.set_items(items)?
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])?
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(items)?
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(module, name)?
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module.as_str(), name.as_str()) {
                    (Some(m), Some(n)) => self.global(m, n)?,
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'q' => {
                let k = self.u8()?;
                self.memo_put(k.into())?
            }
            b'r' => {
                let k = self.u32()?;
                self.memo_put(k)?
            }
            0x94 => {
                let k = u32::try_from(self.memo.len()).map_err(|_| "memo is full".to_string())?;
                self.memo_put(k)?
            }
            b'h' => {
                let k = self.u8()?;
                self.memo_get(k.into())?
            }
            b'j' => {
                let k = self.u32()?;
                self.memo_get(k)?
            }
            b'Q' => {
                let pid = self.pop()?;
                let storage = storage_ref(pid)?;
                self.push(Value::Storage(storage))?
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let out = call(callable, args, self.limits)?;
                self.push(out)?
            }
            b'b' => {
                let _state = self.pop()?;
                match self.top()? {
                    Value::Dict(_) | Value::Tensor(_) => {}
                    other => return Err(format!("BUILD on a {}", other.kind())),
                }
            }
            _ => return Err("opcode not supported by this reader".into()),
        }
        Ok(false)
    }
}

/// `('storage', torch.XStorage, key, location, numel)` from BINPERSID.
fn storage_ref(pid: Value) -> Step<StorageRef> {
    let Value::Tuple(t) = pid else {
        return Err(format!("persistent id is a {}, not a tuple", pid.kind()));
    };
    match t.items.as_slice() {
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_), Value::Int(numel)]
            if &**tag == "storage" =>
        {
            if key.is_empty()
                || key.len() > 64
                || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(format!("storage key `{key}` is not a plain name"));
            }
            let numel = u64::try_from(*numel)
                .map_err(|_| format!("storage `{key}` has {numel} elements"))?;
            Ok(StorageRef {
                dtype: *dtype,
                key: key.clone(),
                numel,
            })
        }
        _ => Err("persistent id is not ('storage', torch.<T>Storage, key, location, numel)".into()),
    }
}

fn ints(v: &Value, what: &str, max_rank: usize) -> Step<Vec<u64>> {
    let Value::Tuple(t) = v else {
        return Err(format!("{what} is a {}, not a tuple", v.kind()));
    };
    if t.items.len() > max_rank {
        return Err(format!(
            "{what} has {} dimensions, more than {max_rank}",
            t.items.len()
        ));
    }
    t.items
        .iter()
        .map(|x| match x {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            other => Err(format!("{what} holds {other:?}, not a non-negative int")),
        })
        .collect()
}

/// Applies an allow-listed callable (REDUCE or NEWOBJ).
fn call(callable: Value, args: Value, limits: &Limits) -> Step<Value> {
    let Value::Global(g) = callable else {
        return Err(format!("cannot call a {}", callable.kind()));
    };
    let Value::Tuple(args) = args else {
        return Err(format!("arguments are a {}, not a tuple", args.kind()));
    };
    let a = args.items.as_slice();
    match g {
        Global::OrderedDict if a.is_empty() => Ok(Value::Dict(Map {
            entries: Vec::new(),
            depth: 1,
        })),
        Global::RebuildTensorV2 => rebuild_tensor(a, limits),
        Global::RebuildParameter | Global::RebuildParameterWithState => match a.first() {
            Some(Value::Tensor(t)) => Ok(Value::Tensor(t.clone())),
            _ => Err("_rebuild_parameter needs a tensor".into()),
        },
        Global::RebuildFromTypeV2 => match a {
            [Value::Global(Global::RebuildTensorV2), Value::Global(Global::TensorType), Value::Tuple(inner), ..] => {
                rebuild_tensor(&inner.items, limits)
            }
            _ => Err("_rebuild_from_type_v2 is only accepted around _rebuild_tensor_v2".into()),
        },
        other => Err(format!(
            "{other:?} cannot be called with {} arguments",
            a.len()
        )),
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, meta])`.
fn rebuild_tensor(a: &[Value], limits: &Limits) -> Step<Value> {
    let [Value::Storage(storage), Value::Int(offset), size, stride, ..] = a else {
        return Err("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)".into());
    };
    let offset = u64::try_from(*offset).map_err(|_| format!("storage offset {offset}"))?;
    let shape = ints(size, "size", limits.max_rank)?;
    let strides = ints(stride, "stride", limits.max_rank)?;
    if shape.len() != strides.len() {
        return Err(format!(
            "size has {} dimensions but stride has {}",
            shape.len(),
            strides.len()
        ));
    }
    let shape = shape
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| format!("dimension {d} is too large")))
        .collect::<Step<Vec<usize>>>()?;
    Ok(Value::Tensor(Rc::new(TensorRecord {
        storage: storage.clone(),
        offset,
        shape,
        strides,
    })))
}
