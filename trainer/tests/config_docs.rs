//! The configuration reference (`docs/configuration.md`) cannot drift from the code:
//!
//! - every key path in every shipped `examples/**/*.toml` (tables, inline tables and arrays of
//!   tables, e.g. `algorithm.policy_loss.clip_low`, `task.dataset.synthetic.n`) is documented;
//!   verifier options inside `[[task.verifiers]]` may be documented in `VERIFIERS.md` instead;
//! - every field of the config types (`TrainConfig` and everything below it, aliases included,
//!   and the synthetic generators' parameters) is documented, found by walking the serde
//!   deserializers themselves, so a new field fails this test until it is documented;
//! - every documented key still exists.
//!
//! A key is documented when a heading names its table (`` ## `[algorithm.policy_loss]` `` or
//! `` ### `[[task.verifiers]]` ``; "Top-level keys" is the top level) and the first cell of a
//! table row under it names the key in backticks.

use oxrl_datasets::synthetic::{ArithParams, CountdownParams};
use oxrl_trainer::config::TrainConfig;
use serde::de::{self, DeserializeSeed, Visitor};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

// ---- What the docs document ----

/// `(keys, tables)` a markdown file documents (see the module docs).
fn documented(markdown: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut keys = BTreeSet::new();
    let mut tables = BTreeSet::new();
    let mut table: Option<String> = None;
    for line in markdown.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            table = if line.to_ascii_lowercase().contains("top-level keys") {
                Some(String::new())
            } else {
                line.split('`')
                    .skip(1)
                    .step_by(2)
                    .find(|t| t.starts_with('[') && t.ends_with(']'))
                    .map(|t| t.trim_matches(|c| c == '[' || c == ']').to_string())
            };
            if let Some(t) = &table {
                tables.insert(t.clone());
            }
            continue;
        }
        let (Some(t), Some(rest)) = (&table, line.strip_prefix('|')) else {
            continue;
        };
        let Some(first) = rest.split('|').next() else {
            continue;
        };
        for token in first.split('`').skip(1).step_by(2) {
            let ident = !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                && !token.starts_with(|c: char| c.is_ascii_digit() || c == '.');
            if ident {
                keys.insert(join(t, token));
            }
        }
    }
    (keys, tables)
}

/// Option names in the first cell of any table row of `VERIFIERS.md`.
fn verifier_options(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.trim().strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_string)
        .collect()
}

fn config_docs() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(repo().join("docs/configuration.md"))
        .expect("docs/configuration.md exists");
    documented(&text)
}

// ---- What the examples use ----

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            toml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

/// Every key path of a TOML value (arrays of tables share their path).
fn key_paths(prefix: &str, v: &toml::Value, out: &mut Vec<(String, Option<toml::Table>)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                let p = join(prefix, k);
                if p == "task.verifiers" {
                    out.push((p.clone(), None));
                    for spec in x.as_array().into_iter().flatten() {
                        if let Some(t) = spec.as_table() {
                            out.push((p.clone(), Some(t.clone())));
                        }
                    }
                    continue;
                }
                out.push((p.clone(), None));
                key_paths(&p, x, out);
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|x| key_paths(prefix, x, out)),
        _ => {}
    }
}

/// Undocumented keys of one verifier table: `name` / `weight` in the configuration reference,
/// options there or in VERIFIERS.md; an `inner` table is a verifier table itself; other nested
/// tables (`options`, `env`, `headers`) are free-form.
fn verifier_gaps(
    path: &str,
    spec: &toml::Table,
    docs: &BTreeSet<String>,
    options: &BTreeSet<String>,
    out: &mut Vec<String>,
) {
    for (k, v) in spec {
        let p = join(path, k);
        let known = docs.contains(&join("task.verifiers", k))
            || (k != "name" && k != "weight" && options.contains(k));
        if !known {
            out.push(p.clone());
        }
        if let (true, Some(inner)) = (k == "inner", v.as_table()) {
            verifier_gaps(&p, inner, docs, options, out);
        }
    }
}

#[test]
fn every_key_of_every_example_is_documented() {
    let (docs, tables) = config_docs();
    let verifiers = std::fs::read_to_string(repo().join("VERIFIERS.md")).unwrap();
    let options = verifier_options(&verifiers);
    let mut files = Vec::new();
    toml_files(&repo().join("examples"), &mut files);
    files.sort();
    assert!(files.len() >= 7, "found only {files:?}");
    let mut missing = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let value: toml::Value = toml::from_str(&text).unwrap();
        let mut paths = Vec::new();
        key_paths("", &value, &mut paths);
        let name = f.strip_prefix(repo()).unwrap_or(f).display().to_string();
        for (p, spec) in paths {
            let gaps = match spec {
                Some(spec) => {
                    let mut g = Vec::new();
                    verifier_gaps(&p, &spec, &docs, &options, &mut g);
                    g
                }
                None if docs.contains(&p) || tables.contains(&p) => Vec::new(),
                // A `[[stages]]` table is a partial config: `stages.algorithm.steps` is
                // `algorithm.steps` (its own `name` is documented under `[[stages]]`).
                None if p
                    .strip_prefix("stages.")
                    .is_some_and(|q| docs.contains(q) || tables.contains(q)) =>
                {
                    Vec::new()
                }
                None => vec![p],
            };
            missing.extend(gaps.into_iter().map(|g| format!("{name}: `{g}`")));
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "keys used in examples/ but not documented in docs/configuration.md (verifier \
         options may be in VERIFIERS.md instead):\n  {}",
        missing.join("\n  ")
    );
}

// ---- What the config types accept ----

/// Struct field paths seen while walking a type's deserializer, and which keys to leave out
/// because they alias a key already given.
#[derive(Default)]
struct Walk {
    fields: BTreeSet<String>,
    skip: BTreeSet<(String, String)>,
    last_key: Option<(String, String)>,
}

#[derive(Debug)]
enum WalkError {
    /// A key aliased one already given (serde said `duplicate field`).
    Duplicate,
    Other(String),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for WalkError {}
impl de::Error for WalkError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        WalkError::Other(msg.to_string())
    }
    fn duplicate_field(_: &'static str) -> Self {
        WalkError::Duplicate
    }
}

fn other(e: impl std::fmt::Display) -> WalkError {
    WalkError::Other(e.to_string())
}

/// A deserializer that feeds every struct every one of its fields (recording their paths), with
/// the default config's values where it has them and neutral values elsewhere.
struct Probe {
    path: String,
    default: Option<toml::Value>,
    walk: Rc<RefCell<Walk>>,
}

impl Probe {
    fn child(&self, key: &str, default: Option<toml::Value>) -> Probe {
        Probe {
            path: join(&self.path, key),
            default,
            walk: self.walk.clone(),
        }
    }
}

struct Fields {
    parent: Probe,
    keys: Vec<&'static str>,
    table: Option<toml::Table>,
    next: Option<&'static str>,
}

impl<'de> de::MapAccess<'de> for Fields {
    type Error = WalkError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, WalkError> {
        let Some(k) = self.keys.pop() else {
            return Ok(None);
        };
        self.next = Some(k);
        self.parent.walk.borrow_mut().last_key = Some((self.parent.path.clone(), k.to_string()));
        seed.deserialize(de::value::StrDeserializer::<WalkError>::new(k))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, WalkError> {
        let k = self.next.take().unwrap_or_default();
        let default = self.table.as_ref().and_then(|t| t.get(k).cloned());
        seed.deserialize(self.parent.child(k, default))
    }
}

struct Empty;
impl<'de> de::SeqAccess<'de> for Empty {
    type Error = WalkError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        _: T,
    ) -> Result<Option<T::Value>, WalkError> {
        Ok(None)
    }
}
impl<'de> de::MapAccess<'de> for Empty {
    type Error = WalkError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        _: K,
    ) -> Result<Option<K::Value>, WalkError> {
        Ok(None)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, _: V) -> Result<V::Value, WalkError> {
        Err(other("no value"))
    }
}

/// `len` neutral elements (tuples).
struct Tuple(Probe, usize);
impl<'de> de::SeqAccess<'de> for Tuple {
    type Error = WalkError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, WalkError> {
        if self.1 == 0 {
            return Ok(None);
        }
        self.1 -= 1;
        seed.deserialize(self.0.child("_", None)).map(Some)
    }
}

/// The first variant of an enum.
struct FirstVariant(Probe, &'static str);
impl<'de> de::EnumAccess<'de> for FirstVariant {
    type Error = WalkError;
    type Variant = Probe;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Probe), WalkError> {
        let v = seed.deserialize(de::value::StrDeserializer::<WalkError>::new(self.1))?;
        Ok((v, self.0))
    }
}
impl<'de> de::VariantAccess<'de> for Probe {
    type Error = WalkError;
    fn unit_variant(self) -> Result<(), WalkError> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, WalkError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, WalkError> {
        visitor.visit_seq(Tuple(self, len))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

macro_rules! leaf {
    ($($method:ident => |$v:ident| $neutral:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, $v: V) -> Result<V::Value, WalkError> {
            match self.default {
                Some(d) => d.$method($v).map_err(other),
                None => $neutral,
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Probe {
    type Error = WalkError;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        let mut this = self;
        let table = match this.default.take() {
            Some(toml::Value::Table(t)) => Some(t),
            Some(d) => return d.deserialize_struct(name, fields, visitor).map_err(other),
            None => None,
        };
        let this = this;
        let keys = {
            let mut w = this.walk.borrow_mut();
            for f in fields {
                w.fields.insert(join(&this.path, f));
            }
            let mut keys: Vec<&'static str> = fields
                .iter()
                .copied()
                .filter(|f| !w.skip.contains(&(this.path.clone(), f.to_string())))
                .collect();
            keys.reverse();
            keys
        };
        visitor.visit_map(Fields {
            parent: this,
            keys,
            table,
            next: None,
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        visitor.visit_some(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        match self.default {
            Some(d) => d.deserialize_enum(name, variants, visitor).map_err(other),
            None => visitor.visit_enum(FirstVariant(self, variants[0])),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        match self.default {
            Some(d) => d.deserialize_tuple(len, visitor).map_err(other),
            None => visitor.visit_seq(Tuple(self, len)),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        visitor.visit_unit()
    }

    leaf! {
        deserialize_any => |v| v.visit_unit();
        deserialize_bool => |v| v.visit_bool(false);
        deserialize_i8 => |v| v.visit_i64(0);
        deserialize_i16 => |v| v.visit_i64(0);
        deserialize_i32 => |v| v.visit_i64(0);
        deserialize_i64 => |v| v.visit_i64(0);
        deserialize_u8 => |v| v.visit_u64(0);
        deserialize_u16 => |v| v.visit_u64(0);
        deserialize_u32 => |v| v.visit_u64(0);
        deserialize_u64 => |v| v.visit_u64(0);
        deserialize_f32 => |v| v.visit_f64(0.0);
        deserialize_f64 => |v| v.visit_f64(0.0);
        deserialize_char => |v| v.visit_char('x');
        deserialize_str => |v| v.visit_str("");
        deserialize_string => |v| v.visit_str("");
        deserialize_bytes => |v| v.visit_bytes(&[]);
        deserialize_byte_buf => |v| v.visit_bytes(&[]);
        deserialize_unit => |v| v.visit_unit();
        deserialize_seq => |v| v.visit_seq(Empty);
        deserialize_map => |v| v.visit_map(Empty);
        deserialize_identifier => |v| v.visit_str("");
        deserialize_ignored_any => |v| v.visit_unit();
    }
}

/// Every struct field path `T` accepts under `prefix` (aliases included).
fn accepted_fields<T: for<'de> Deserialize<'de>>(
    prefix: &str,
    default: Option<toml::Value>,
) -> BTreeSet<String> {
    let walk = Rc::new(RefCell::new(Walk::default()));
    for _ in 0..200 {
        let probe = Probe {
            path: prefix.to_string(),
            default: default.clone(),
            walk: walk.clone(),
        };
        match T::deserialize(probe) {
            Ok(_) => return std::mem::take(&mut walk.borrow_mut().fields),
            Err(WalkError::Duplicate) => {
                let mut w = walk.borrow_mut();
                let last = w.last_key.take().expect("a duplicate after a key");
                assert!(w.skip.insert(last.clone()), "no progress at {last:?}");
            }
            Err(WalkError::Other(e)) => {
                let last = walk.borrow().last_key.clone();
                panic!(
                    "walking {}: {e} (last key {last:?})",
                    std::any::type_name::<T>()
                )
            }
        }
    }
    panic!("too many aliases");
}

/// Every field of the configuration: `TrainConfig` (from a minimal config's values, so that
/// custom and untagged types get valid ones) and the synthetic generators' parameters.
fn all_config_fields() -> BTreeSet<String> {
    let minimal = TrainConfig::from_toml_str(
        "[model]\ninit = \"tiny\"\n[algorithm]\nname = \"grpo\"\nsteps = 1\n",
        "minimal",
        &[],
    )
    .unwrap();
    let default = toml::Value::try_from(&minimal).unwrap();
    let mut fields = accepted_fields::<TrainConfig>("", Some(default));
    fields.extend(accepted_fields::<ArithParams>(
        "task.dataset.synthetic",
        None,
    ));
    fields.extend(accepted_fields::<CountdownParams>(
        "task.dataset.synthetic",
        None,
    ));
    fields
}

#[test]
fn the_walk_finds_nested_optional_and_aliased_fields() {
    let f = all_config_fields();
    for key in [
        "seed",
        "model.lora.rank",
        "algorithm.policy_loss.clip_low",
        "algorithm.policy_loss.epsilon",
        "algorithm.policy_loss.kl.coef",
        "algorithm.policy_loss.cispo.ratio_max",
        "task.dataset.fields.prompt",
        "task.dataset.synthetic.max_target",
        "optim.schedule.kind",
    ] {
        assert!(f.contains(key), "{key} not found in {f:#?}");
    }
    assert!(
        !f.iter().any(|k| k.ends_with("base_dir")),
        "skipped fields are not keys"
    );
}

#[test]
fn every_field_of_the_config_types_is_documented() {
    let (docs, tables) = config_docs();
    let missing: Vec<String> = all_config_fields()
        .into_iter()
        .filter(|k| !docs.contains(k) && !tables.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "config fields not documented in docs/configuration.md:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_documented_key_exists() {
    let (docs, tables) = config_docs();
    let fields = all_config_fields();
    let is_table = |t: &String| {
        t.is_empty() || fields.contains(t) || fields.iter().any(|f| f.starts_with(&format!("{t}.")))
    };
    let stale: Vec<&String> = docs
        .iter()
        .filter(|k| !fields.contains(*k))
        .filter(|k| !["task.verifiers.name", "task.verifiers.weight"].contains(&k.as_str()))
        // `[[stages]]` is read before the config types (oxrl_trainer::pipeline).
        .filter(|k| k.as_str() != "stages.name")
        .chain(
            tables
                .iter()
                .filter(|t| !is_table(t) && t.as_str() != "stages"),
        )
        .collect();
    assert!(
        stale.is_empty(),
        "docs/configuration.md documents keys the config does not have:\n  {stale:?}"
    );
}

#[test]
fn the_docs_parser_reads_headings_and_rows() {
    let md = "# Title\n| `not_a_key` | x |\n## Top-level keys\n| key | default |\n|---|---|\n\
              | `seed` | `0` |\n## `[algorithm.policy_loss]`\n| `clip_low` (aliases `epsilon`, \
              `clip_ratio_low`) | `0.2` | `1 - clip_low` |\n### `[[task.verifiers]]`\n| `name` |\n";
    let (keys, tables) = documented(md);
    let want: BTreeSet<String> = [
        "seed",
        "algorithm.policy_loss.clip_low",
        "algorithm.policy_loss.epsilon",
        "algorithm.policy_loss.clip_ratio_low",
        "task.verifiers.name",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(keys, want);
    assert!(tables.contains("algorithm.policy_loss") && tables.contains("task.verifiers"));
}
