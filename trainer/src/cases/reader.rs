//! Reading one case object: typed accessors that build f64 tensors, remember which fields were
//! read, and reject what is malformed (wrong shape, null/NaN where a number belongs) or unknown
//! (a field no evaluator reads is an error naming it — never silently ignored).

use std::cell::RefCell;
use std::collections::BTreeSet;

use candle_core::{DType, Device, Tensor};
use serde_json::{Map, Value};

/// An error in one case: what field, what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// A required field is missing.
    #[error("missing field `{0}`")]
    Missing(String),
    /// A field has the wrong type or shape, or holds a non-finite number.
    #[error("field `{field}`: {msg}")]
    Invalid {
        /// The field's path (`config.epsilon`).
        field: String,
        /// What was wrong.
        msg: String,
    },
    /// Fields no evaluator of this kind reads.
    #[error("unknown field(s) {fields} for kind `{kind}`; accepted: {accepted}")]
    Unknown {
        /// The case's kind.
        kind: String,
        /// The unknown field paths, comma-separated.
        fields: String,
        /// The fields this kind reads, comma-separated.
        accepted: String,
    },
    /// The math rejected the inputs.
    #[error(transparent)]
    Math(#[from] crate::MathError),
}

impl From<candle_core::Error> for CaseError {
    fn from(e: candle_core::Error) -> Self {
        CaseError::Math(e.into())
    }
}

/// The result type of case evaluation.
pub type CaseResult<T> = std::result::Result<T, CaseError>;

/// Typed, tracked access to the fields of one JSON object (a case, or its `config`).
pub struct CaseReader<'a> {
    obj: &'a Map<String, Value>,
    prefix: String,
    read: RefCell<BTreeSet<String>>,
    declared: RefCell<BTreeSet<String>>,
}

impl<'a> CaseReader<'a> {
    /// A reader over `obj`; `prefix` names it in errors (`""` for the case, `"config"` …).
    pub fn new(obj: &'a Map<String, Value>, prefix: &str) -> Self {
        Self {
            obj,
            prefix: prefix.to_string(),
            read: RefCell::new(BTreeSet::new()),
            declared: RefCell::new(BTreeSet::new()),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn invalid(&self, key: &str, msg: impl Into<String>) -> CaseError {
        CaseError::Invalid {
            field: self.path(key),
            msg: msg.into(),
        }
    }

    /// The raw value of `key`, `None` when absent or JSON null. Marks it read.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.declared.borrow_mut().insert(key.to_string());
        self.read.borrow_mut().insert(key.to_string());
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Marks fields as accepted without reading them (tags, ids, fields a kind ignores on purpose).
    pub fn accept(&self, keys: &[&str]) {
        for k in keys {
            self.declared.borrow_mut().insert(k.to_string());
            self.read.borrow_mut().insert(k.to_string());
        }
    }

    /// Whether `key` is present and not null.
    pub fn has(&self, key: &str) -> bool {
        self.declared.borrow_mut().insert(key.to_string());
        !matches!(self.obj.get(key), None | Some(Value::Null))
    }

    /// A finite number, or `default` when absent/null.
    pub fn f64_or(&self, key: &str, default: f64) -> CaseResult<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }

    /// A finite number when present.
    pub fn opt_f64(&self, key: &str) -> CaseResult<Option<f64>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                Some(_) => Err(self.invalid(key, "not a finite number")),
                None => Err(self.invalid(key, format!("expected a number, got {v}"))),
            },
        }
    }

    /// A required finite number.
    pub fn f64(&self, key: &str) -> CaseResult<f64> {
        self.opt_f64(key)?
            .ok_or_else(|| CaseError::Missing(self.path(key)))
    }

    /// A non-negative integer when present.
    pub fn opt_usize(&self, key: &str) -> CaseResult<Option<usize>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(x) => Ok(Some(x as usize)),
                None => match v.as_f64() {
                    Some(x) if x >= 0.0 && x.fract() == 0.0 => Ok(Some(x as usize)),
                    _ => {
                        Err(self.invalid(key, format!("expected a non-negative integer, got {v}")))
                    }
                },
            },
        }
    }

    /// A boolean, or `default` when absent/null.
    pub fn bool_or(&self, key: &str, default: bool) -> CaseResult<bool> {
        match self.raw(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.invalid(key, format!("expected true or false, got {v}"))),
        }
    }

    /// A string when present.
    pub fn opt_str(&self, key: &str) -> CaseResult<Option<&'a str>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(self.invalid(key, format!("expected a string, got {v}"))),
        }
    }

    /// A string, or `default` when absent/null.
    pub fn str_or(&self, key: &str, default: &'a str) -> CaseResult<&'a str> {
        Ok(self.opt_str(key)?.unwrap_or(default))
    }

    /// A required string.
    pub fn str(&self, key: &str) -> CaseResult<&'a str> {
        self.opt_str(key)?
            .ok_or_else(|| CaseError::Missing(self.path(key)))
    }

    /// A nested object as its own reader (`None` when absent/null). Its unknown fields are checked
    /// by calling [`CaseReader::finish`] on it.
    pub fn object(&self, key: &str) -> CaseResult<Option<CaseReader<'a>>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(CaseReader::new(m, &self.path(key)))),
            Some(v) => Err(self.invalid(key, format!("expected an object, got {v}"))),
        }
    }

    /// Numbers of any nesting depth, flattened, with the shape found. Rejects ragged arrays,
    /// non-numbers (null is how a NaN arrives after [`super::parse_lenient`]) and non-finite values.
    pub fn numbers(&self, key: &str) -> CaseResult<Option<(Vec<f64>, Vec<usize>)>> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        let mut out = Vec::new();
        let mut shape = Vec::new();
        flatten(v, 0, &mut shape, &mut out).map_err(|m| self.invalid(key, m))?;
        Ok(Some((out, shape)))
    }

    /// An f64 tensor of exactly `rank` dimensions when present.
    pub fn opt_tensor(&self, key: &str, rank: usize) -> CaseResult<Option<Tensor>> {
        let Some((data, shape)) = self.numbers(key)? else {
            return Ok(None);
        };
        if shape.len() != rank {
            return Err(self.invalid(
                key,
                format!("expected {rank} dimension(s), got shape {shape:?}"),
            ));
        }
        Ok(Some(Tensor::from_vec(data, shape, &Device::Cpu)?))
    }

    /// A required f64 tensor of `rank` dimensions.
    pub fn tensor(&self, key: &str, rank: usize) -> CaseResult<Tensor> {
        self.opt_tensor(key, rank)?
            .ok_or_else(|| CaseError::Missing(self.path(key)))
    }

    /// A required f64 tensor of exactly `dims`.
    pub fn tensor_shaped(&self, key: &str, dims: &[usize]) -> CaseResult<Tensor> {
        let t = self.tensor(key, dims.len())?;
        self.check_shape(key, &t, dims)?;
        Ok(t)
    }

    /// A `[B × T]` 0/1 mask; all zeros is an error (nothing to average over).
    pub fn mask(&self, key: &str, dims: &[usize]) -> CaseResult<Tensor> {
        let m = self.tensor_shaped(key, dims)?;
        if m.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()? == 0.0 {
            return Err(self.invalid(key, "the mask selects no element"));
        }
        Ok(m)
    }

    /// Errors unless `t` has exactly `dims`.
    pub fn check_shape(&self, key: &str, t: &Tensor, dims: &[usize]) -> CaseResult<()> {
        if t.dims() != dims {
            return Err(self.invalid(key, format!("expected shape {dims:?}, got {:?}", t.dims())));
        }
        Ok(())
    }

    /// Group ids from a JSON array of scalars (verl's `index` / `uid`): equal values, one group;
    /// groups numbered by first appearance.
    pub fn group_ids(&self, key: &str) -> CaseResult<Vec<usize>> {
        let v = self
            .raw(key)
            .ok_or_else(|| CaseError::Missing(self.path(key)))?;
        let arr = v
            .as_array()
            .ok_or_else(|| self.invalid(key, "expected an array of group ids"))?;
        let mut seen: Vec<String> = Vec::new();
        let mut ids = Vec::with_capacity(arr.len());
        for x in arr {
            if x.is_array() || x.is_object() || x.is_null() {
                return Err(self.invalid(key, format!("a group id must be a scalar, got {x}")));
            }
            let k = x.to_string();
            let id = match seen.iter().position(|s| *s == k) {
                Some(i) => i,
                None => {
                    seen.push(k);
                    seen.len() - 1
                }
            };
            ids.push(id);
        }
        Ok(ids)
    }

    /// Errors on every field of the object that no accessor touched, naming the accepted ones.
    pub fn finish(&self, kind: &str) -> CaseResult<()> {
        let read = self.read.borrow();
        let unknown: Vec<String> = self
            .obj
            .keys()
            .filter(|k| !read.contains(*k))
            .map(|k| self.path(k))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let accepted: Vec<String> = self
            .declared
            .borrow()
            .iter()
            .map(|k| self.path(k))
            .collect();
        Err(CaseError::Unknown {
            kind: kind.to_string(),
            fields: unknown.join(", "),
            accepted: accepted.join(", "),
        })
    }
}

fn flatten(
    v: &Value,
    depth: usize,
    shape: &mut Vec<usize>,
    out: &mut Vec<f64>,
) -> Result<(), String> {
    match v {
        Value::Array(items) => {
            if shape.len() == depth {
                shape.push(items.len());
            } else if shape.get(depth) != Some(&items.len()) {
                return Err(format!("ragged array at depth {depth}"));
            }
            for it in items {
                flatten(it, depth + 1, shape, out)?;
            }
            Ok(())
        }
        Value::Number(n) => {
            if shape.len() != depth {
                return Err(format!("ragged array at depth {depth}"));
            }
            let x = n.as_f64().ok_or("not a number")?;
            if !x.is_finite() {
                return Err("holds a non-finite number".into());
            }
            out.push(x);
            Ok(())
        }
        Value::Bool(b) => {
            // Masks written as booleans.
            out.push(if *b { 1.0 } else { 0.0 });
            Ok(())
        }
        Value::Null => Err("holds NaN, Infinity or null where a number belongs".into()),
        other => Err(format!("expected numbers, got {other}")),
    }
}

/// A tensor as nested JSON arrays of f64 (any rank; rank 0 is a number).
pub fn tensor_json(t: &Tensor) -> CaseResult<Value> {
    let t = t.to_dtype(DType::F64)?;
    let dims = t.dims().to_vec();
    let flat = t.flatten_all()?.to_vec1::<f64>()?;
    fn build(flat: &[f64], dims: &[usize]) -> Value {
        match dims {
            [] => num(flat[0]),
            [n] => Value::Array(flat[..*n].iter().map(|&x| num(x)).collect()),
            [n, rest @ ..] => {
                let stride: usize = rest.iter().product();
                Value::Array(
                    (0..*n)
                        .map(|i| build(&flat[i * stride..(i + 1) * stride], rest))
                        .collect(),
                )
            }
        }
    }
    Ok(build(&flat, &dims))
}

/// An f64 as JSON (non-finite values as null, since JSON has no NaN).
pub fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}
