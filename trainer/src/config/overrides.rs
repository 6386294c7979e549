//! `--set key=value` overrides: a dotted key path into the config's TOML tree and a TOML value
//! (`3`, `0.5`, `true`, `"text"`, `[1, 2]`); a value that does not parse as TOML is taken as a
//! plain string, so `--set model.path=/tmp/m` needs no quotes.

use crate::train_error::{TrainError, TrainResult};
use toml::{Table, Value};

/// One parsed `key=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Dotted path, e.g. `algorithm.steps`.
    pub key: String,
    /// The value.
    pub value: Value,
}

impl Override {
    /// Parses `key=value`.
    pub fn parse(text: &str) -> TrainResult<Self> {
        let (key, raw) = text.split_once('=').ok_or_else(|| {
            TrainError::config("--set", text, "expected KEY=VALUE, e.g. algorithm.steps=10")
        })?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(TrainError::config("--set", key, "empty key segment"));
        }
        let raw = raw.trim();
        let value = match toml::from_str::<Table>(&format!("v = {raw}")) {
            Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(raw.into())),
            Err(_) => Value::String(raw.to_string()),
        };
        Ok(Self {
            key: key.to_string(),
            value,
        })
    }

    /// Writes the value into `root`, creating intermediate tables. Fails when a segment on the way
    /// is a value rather than a table.
    pub fn apply(&self, root: &mut Table) -> TrainResult<()> {
        let parts: Vec<&str> = self.key.split('.').collect();
        let (last, path) = parts
            .split_last()
            .ok_or_else(|| TrainError::config("--set", &self.key, "empty key"))?;
        let mut table = root;
        for (i, part) in path.iter().enumerate() {
            let entry = table
                .entry(part.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            table = match entry {
                Value::Table(t) => t,
                _ => {
                    return Err(TrainError::config(
                        "--set",
                        parts[..=i].join("."),
                        "is a value, not a table",
                    ))
                }
            };
        }
        table.insert(last.to_string(), self.value.clone());
        // The model comes from one source: `--set model.path=…` replaces the file's
        // `model.init` (and the other way round), so a config for the built-in model can be
        // pointed at a checkpoint from the command line.
        match self.key.as_str() {
            "model.path" => {
                table.remove("init");
            }
            "model.init" => {
                table.remove("path");
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_toml_or_fall_back_to_strings() {
        let o = Override::parse("algorithm.steps=3").unwrap();
        assert_eq!(
            (o.key.as_str(), &o.value),
            ("algorithm.steps", &Value::Integer(3))
        );
        assert_eq!(Override::parse("a=0.5").unwrap().value, Value::Float(0.5));
        assert_eq!(
            Override::parse("a=true").unwrap().value,
            Value::Boolean(true)
        );
        assert_eq!(
            Override::parse("model.path=/tmp/x y").unwrap().value,
            Value::String("/tmp/x y".into())
        );
        assert_eq!(
            Override::parse("a=\"3\"").unwrap().value,
            Value::String("3".into())
        );
        assert!(Override::parse("novalue").is_err());
        assert!(Override::parse("a..b=1").is_err());
    }

    #[test]
    fn a_model_path_override_replaces_the_files_init() {
        let mut t: Table = toml::from_str("[model]\ninit = \"tiny\"\ndtype = \"f32\"\n").unwrap();
        Override::parse("model.path=runs/x")
            .unwrap()
            .apply(&mut t)
            .unwrap();
        assert_eq!(t["model"]["path"], Value::String("runs/x".into()));
        assert!(t["model"].get("init").is_none());
        assert_eq!(t["model"]["dtype"], Value::String("f32".into()));
        Override::parse("model.init=\"tiny\"")
            .unwrap()
            .apply(&mut t)
            .unwrap();
        assert!(t["model"].get("path").is_none());
    }

    #[test]
    fn apply_creates_tables_and_refuses_to_descend_into_values() {
        let mut t: Table = toml::from_str("seed = 1\n[optim]\nlr = 0.1\n").unwrap();
        Override::parse("optim.lr=0.5")
            .unwrap()
            .apply(&mut t)
            .unwrap();
        Override::parse("kl.coef=0.2")
            .unwrap()
            .apply(&mut t)
            .unwrap();
        assert_eq!(t["optim"]["lr"], Value::Float(0.5));
        assert_eq!(t["kl"]["coef"], Value::Float(0.2));
        let err = Override::parse("seed.x=1")
            .unwrap()
            .apply(&mut t)
            .unwrap_err();
        assert!(err.to_string().contains("`seed`"), "{err}");
    }
}
