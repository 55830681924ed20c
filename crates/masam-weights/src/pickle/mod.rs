//! The bounded pickle interpreter and the state-dict it yields.

mod machine;
mod opcode;
mod value;

use std::rc::Rc;

pub(crate) use machine::{run, Fault};
pub(crate) use value::{TensorRecord, Value};

/// Keys under which training checkpoints commonly wrap the state dict.
const WRAPPER_KEYS: [&str; 2] = ["model", "state_dict"];

fn tensors_of(dict: &value::Map) -> Vec<(String, Rc<TensorRecord>)> {
    let mut out: Vec<(String, Rc<TensorRecord>)> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (k, v) in &dict.entries {
        if let (Some(name), Value::Tensor(t)) = (k.as_str(), v) {
            match seen.get(name) {
                Some(&i) => out[i] = (name.to_string(), t.clone()),
                None => {
                    seen.insert(name.to_string(), out.len());
                    out.push((name.to_string(), t.clone()));
                }
            }
        }
    }
    out
}

/// The tensors of the state dict the pickle holds: the top-level dict's tensor entries, or,
/// when it has none, those of its `model` or `state_dict` entry. Other entries are ignored.
pub(crate) fn state_dict(root: &Value) -> Vec<(String, Rc<TensorRecord>)> {
    let Value::Dict(top) = root else {
        return Vec::new();
    };
    let direct = tensors_of(top);
    if !direct.is_empty() {
        return direct;
    }
    for key in WRAPPER_KEYS {
        let inner = top
            .entries
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key));
        if let Some((_, Value::Dict(d))) = inner {
            let found = tensors_of(d);
            if !found.is_empty() {
                return found;
            }
        }
    }
    Vec::new()
}
