//! The objects the bounded pickle interpreter can build.

use std::rc::Rc;

use crate::WeightDtype;

/// A global (`module.name`) from the allow-list: the only callables a pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter`.
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state`.
    RebuildParameterWithState,
    /// `torch._tensor._rebuild_from_type_v2`.
    RebuildFromTypeV2,
    /// `torch.nn.parameter.Parameter` or `torch.Tensor` (only as the type argument of
    /// `_rebuild_from_type_v2`).
    TensorType,
    /// `torch.<X>Storage`.
    Storage(WeightDtype),
}

impl Global {
    /// The allow-listed global called `module.name`, if it is one.
    pub(crate) fn lookup(module: &str, name: &str) -> Option<Self> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Self::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Self::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Self::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Self::RebuildParameterWithState,
            ("torch._tensor", "_rebuild_from_type_v2") => Self::RebuildFromTypeV2,
            ("torch.nn.parameter", "Parameter") | ("torch", "Tensor") => Self::TensorType,
            ("torch", storage) => Self::Storage(WeightDtype::from_torch_storage(storage)?),
            _ => return None,
        })
    }
}

/// A reference to a storage entry of the archive (`data/{key}`), from a persistent id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    pub(crate) dtype: WeightDtype,
    pub(crate) key: Rc<str>,
    pub(crate) numel: u64,
}

/// A view on a storage, from `_rebuild_tensor_v2`, not yet checked against the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorRecord {
    pub(crate) storage: StorageRef,
    pub(crate) offset: u64,
    pub(crate) shape: Vec<usize>,
    pub(crate) strides: Vec<u64>,
}

/// A pickle object. Immutable containers (tuples) and strings are shared on copy; mutable ones
/// (lists, dicts) are copied, and the copy is charged to the interpreter's budget.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    /// `True`/`False` (the value is never needed).
    Bool,
    Int(i64),
    /// A float (the value is never needed).
    Float,
    Str(Rc<str>),
    /// A bytes object (only its presence is kept).
    Bytes,
    Tuple(Rc<Seq>),
    List(Seq),
    Dict(Map),
    Global(Global),
    Storage(StorageRef),
    Tensor(Rc<TensorRecord>),
}

/// Items of a tuple or list with their nesting depth (1 + the deepest item's).
#[derive(Debug, Clone, Default)]
pub(crate) struct Seq {
    pub(crate) items: Vec<Value>,
    pub(crate) depth: usize,
}

/// Entries of a dict in insertion order (a later duplicate key wins when read), with depth.
#[derive(Debug, Clone, Default)]
pub(crate) struct Map {
    pub(crate) entries: Vec<(Value, Value)>,
    pub(crate) depth: usize,
}

impl Value {
    /// Nesting depth: 0 for scalars, 1 + the deepest item for containers.
    pub(crate) fn depth(&self) -> usize {
        match self {
            Value::Tuple(s) => s.depth,
            Value::List(s) => s.depth,
            Value::Dict(m) => m.depth,
            _ => 0,
        }
    }

    /// The string, if this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the kind of object, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}
