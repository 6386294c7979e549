//! Typed reading of a verifier's JSON options map: unknown keys and wrong types are
//! [`VerifierError::Config`] errors that name the verifier and the key. The built-in verifiers
//! read their keys through [`Options`]; the plugins and combinators deserialize a struct
//! ([`typed_options`]).

use crate::VerifierError;
use serde_json::{Map, Value};

/// A verifier's options with the keys it accepts; every getter checks the type of its key.
pub(crate) struct Options<'a> {
    verifier: &'static str,
    map: &'a Map<String, Value>,
}

impl<'a> Options<'a> {
    /// Wraps `map`, rejecting any key not in `known`.
    pub(crate) fn new(
        verifier: &'static str,
        map: &'a Map<String, Value>,
        known: &[&str],
    ) -> Result<Self, VerifierError> {
        let me = Self { verifier, map };
        if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(me.err(format!(
                "unknown option `{key}`; known: {}",
                known.join(", ")
            )));
        }
        Ok(me)
    }

    /// A configuration error of this verifier.
    pub(crate) fn err(&self, message: impl Into<String>) -> VerifierError {
        config_error(self.verifier, message)
    }

    /// The raw value of `key`, if given (JSON `null` counts as absent).
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Whether `key` is given.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A boolean option with a default.
    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, VerifierError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(format!("`{key}` must be a boolean, got {v}"))),
        }
    }

    /// An optional string option.
    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>, VerifierError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{key}` must be a string, got {v}"))),
        }
    }

    /// An optional non-empty string option.
    pub(crate) fn non_empty_str(&self, key: &str) -> Result<Option<&'a str>, VerifierError> {
        match self.str(key)? {
            Some("") => Err(self.err(format!("`{key}` must not be empty"))),
            other => Ok(other),
        }
    }

    /// A string option that must be one of `allowed`; `default` when absent.
    pub(crate) fn choice(
        &self,
        key: &str,
        allowed: &[&'static str],
        default: &'static str,
    ) -> Result<&'static str, VerifierError> {
        match self.str(key)? {
            None => Ok(default),
            Some(s) => allowed.iter().copied().find(|a| *a == s).ok_or_else(|| {
                self.err(format!(
                    "`{key}` must be one of {}, got `{s}`",
                    allowed.join(", ")
                ))
            }),
        }
    }

    /// An optional non-negative integer option.
    pub(crate) fn usize(&self, key: &str) -> Result<Option<usize>, VerifierError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.err(format!("`{key}` must be a non-negative integer, got {v}"))
                }),
        }
    }

    /// An optional list of strings.
    pub(crate) fn str_list(&self, key: &str) -> Result<Option<Vec<String>>, VerifierError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let bad = || self.err(format!("`{key}` must be a list of strings, got {v}"));
        let items = v.as_array().ok_or_else(bad)?;
        items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional regular expression, compiled now (a bad pattern is a configuration error).
    pub(crate) fn regex(&self, key: &str) -> Result<Option<regex::Regex>, VerifierError> {
        match self.non_empty_str(key)? {
            None => Ok(None),
            Some(p) => compile(p)
                .map(Some)
                .map_err(|e| self.err(format!("`{key}` is not a valid regular expression: {e}"))),
        }
    }
}

/// A configuration error of `verifier`.
pub(crate) fn config_error(verifier: &str, message: impl Into<String>) -> VerifierError {
    VerifierError::Config {
        verifier: verifier.to_string(),
        message: message.into(),
    }
}

/// Reads the options table into `T` (`deny_unknown_fields` there makes typos errors); an error
/// inside a nested value names its path (`` `inner.options`: ... ``).
pub(crate) fn typed_options<T: serde::de::DeserializeOwned>(
    verifier: &str,
    options: &Map<String, Value>,
) -> Result<T, VerifierError> {
    serde_path_to_error::deserialize(Value::Object(options.clone())).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match path.as_str() {
            "." => config_error(verifier, inner.to_string()),
            _ => config_error(verifier, format!("`{path}`: {inner}")),
        }
    })
}

/// Compiles a user's pattern with bounded compiled size.
pub(crate) fn compile(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 22)
        .dfa_size_limit(1 << 24)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn getters_check_types_and_unknown_keys() {
        let m = map(json!({"a": true, "s": "x", "n": 3, "l": ["p", "q"], "z": null}));
        let o = Options::new("t", &m, &["a", "s", "n", "l", "z"]).unwrap();
        assert!(o.bool("a", false).unwrap());
        assert!(o.bool("missing", true).unwrap());
        assert_eq!(o.str("s").unwrap(), Some("x"));
        assert_eq!(o.usize("n").unwrap(), Some(3));
        assert_eq!(o.str_list("l").unwrap().unwrap(), ["p", "q"]);
        assert!(!o.has("z"));
        assert!(o.bool("s", false).is_err());
        assert!(o.str("n").is_err());
        assert!(o.usize("s").is_err());
        assert!(o.str_list("s").is_err());
        assert_eq!(o.choice("s", &["x", "y"], "y").unwrap(), "x");
        assert!(o.choice("s", &["y"], "y").is_err());
        let m = map(json!({"bogus": 1}));
        let e = Options::new("t", &m, &["a"]).err().unwrap().to_string();
        assert!(e.contains("unknown option `bogus`; known: a"), "{e}");
        let m = map(json!({"r": "("}));
        let o = Options::new("t", &m, &["r"]).unwrap();
        assert!(o.regex("r").is_err());
        let m = map(json!({"n": -1}));
        assert!(Options::new("t", &m, &["n"]).unwrap().usize("n").is_err());
    }

    #[test]
    fn typed_options_name_the_path_of_a_bad_value() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            k: u32,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Outer {
            inner: Vec<Inner>,
        }
        let ok: Outer = typed_options("t", &map(json!({"inner": [{"k": 1}]}))).unwrap();
        assert_eq!(ok.inner.len(), 1);
        let e = typed_options::<Outer>("t", &map(json!({"inner": [{"k": 1}, {"k": "x"}]})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("verifier `t`") && e.contains("`inner[1].k`: invalid type"),
            "{e}"
        );
        let e = typed_options::<Outer>("t", &map(json!({"inner": [], "bogus": 1})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `bogus`"), "{e}");
    }
}
