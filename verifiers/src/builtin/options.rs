//! Typed reading of a verifier's JSON options map: the built-in verifiers, the plugins and the
//! combinators deserialize their options into a struct ([`typed_options`],
//! `deny_unknown_fields`), so unknown keys and wrong types are
//! [`VerifierError::Config`] errors that name the verifier and the key (an unknown key's error
//! lists the known ones). A top-level JSON `null` counts as absent. The helpers here cover what
//! serde's derive does not say well: string-only enums ([`string_enum`]), counts ([`count`]),
//! non-empty strings ([`non_empty`]) and regular expressions ([`regex_option`], [`compile`]).

use crate::VerifierError;
use serde_json::{Map, Value};

/// A configuration error of `verifier`.
pub(crate) fn config_error(verifier: &str, message: impl Into<String>) -> VerifierError {
    VerifierError::Config {
        verifier: verifier.to_string(),
        message: message.into(),
    }
}

/// Reads the options table into `T` (`deny_unknown_fields` there makes typos errors); an error
/// inside a nested value names its path (`` `inner.options`: ... ``).
///
/// A top-level field given as JSON `null` counts as absent: it is dropped before deserializing,
/// so an `Option` field reads `None` and a `#[serde(default)]` field its default. A `null` under
/// a key that is not a field of `T` stays, so `deny_unknown_fields` still rejects the key. Nulls
/// deeper inside a value follow serde's usual rules.
pub(crate) fn typed_options<T: serde::de::DeserializeOwned>(
    verifier: &str,
    options: &Map<String, Value>,
) -> Result<T, VerifierError> {
    let fields = struct_fields::<T>();
    let absent = |k: &str, v: &Value| v.is_null() && fields.is_none_or(|f| f.contains(&k));
    let given: Map<String, Value> = options
        .iter()
        .filter(|(k, v)| !absent(k, v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    serde_path_to_error::deserialize(Value::Object(given)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // An unknown key is the last segment of its path and the message names it already:
        // report the table it sits in (`inner[1]`), or nothing at the top level.
        let path = match message.starts_with("unknown field") {
            true => path.rsplit_once('.').map_or(".", |(table, _)| table),
            false => path.as_str(),
        };
        match path {
            "." => config_error(verifier, message),
            _ => config_error(verifier, format!("`{path}`: {message}")),
        }
    })
}

/// The field names that `T`'s `Deserialize` declares when it reads a struct (a derived one
/// does), else `None`.
fn struct_fields<T: serde::de::DeserializeOwned>() -> Option<&'static [&'static str]> {
    use serde::de::{Error, Visitor};
    /// A deserializer that only records the fields a struct asks for, then fails.
    struct Probe<'a>(&'a mut Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = Some(fields);
            Err(Self::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields = None;
    // Always an error: the probe only learns the field names.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// `deserialize_with` for a fieldless enum option written as a string (`"any"`): unlike serde's
/// own enum support, it refuses the one-key-map spelling (`{"any": null}`), which options never
/// accepted.
pub(crate) fn string_enum<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    let s = <String as serde::Deserialize>::deserialize(deserializer)?;
    T::deserialize(serde::de::value::StringDeserializer::<D::Error>::new(s))
}

/// `deserialize_with` for an optional count (`Option<usize>`, `Option<u64>`, ... with
/// `#[serde(default)]`): the same values as the integer type, but an error says "expected a
/// non-negative integer", not "expected usize".
pub(crate) fn count<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::{Error, Unexpected, Visitor};
    use std::marker::PhantomData;
    /// Reads a non-negative integer that fits `T`.
    struct CountVisitor<T>(PhantomData<T>);
    impl<T: TryFrom<u64>> Visitor<'_> for CountVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a non-negative integer")
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
            u64::try_from(v)
                .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
                .and_then(|v| self.visit_u64(v))
        }
    }
    deserializer
        .deserialize_u64(CountVisitor(PhantomData))
        .map(Some)
}

/// `value`, unless it is the empty string: then a configuration error of `verifier` naming `key`.
pub(crate) fn non_empty(
    verifier: &str,
    key: &str,
    value: Option<String>,
) -> Result<Option<String>, VerifierError> {
    match value {
        Some(s) if s.is_empty() => {
            Err(config_error(verifier, format!("`{key}` must not be empty")))
        }
        other => Ok(other),
    }
}

/// The optional non-empty regular expression `pattern` of option `key`, compiled now (a bad
/// pattern is a configuration error of `verifier`).
pub(crate) fn regex_option(
    verifier: &str,
    key: &str,
    pattern: Option<String>,
) -> Result<Option<regex::Regex>, VerifierError> {
    match non_empty(verifier, key, pattern)? {
        None => Ok(None),
        Some(p) => compile(&p).map(Some).map_err(|e| {
            config_error(
                verifier,
                format!("`{key}` is not a valid regular expression: {e}"),
            )
        }),
    }
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
        assert_eq!(e.matches("bogus").count(), 1, "the key is named once: {e}");
        let e = typed_options::<Outer>("t", &map(json!({"inner": [{"k": 1}, {"kk": 2}]})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`inner[1]`: unknown field `kk`, expected `k`"),
            "{e}"
        );
    }

    #[test]
    fn typed_options_read_a_top_level_null_as_absent() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct O {
            #[serde(default)]
            flag: bool,
            name: Option<String>,
            nested: Option<Vec<Option<u32>>>,
        }
        let o: O = typed_options(
            "t",
            &map(json!({"flag": null, "name": null, "nested": [1, null]})),
        )
        .unwrap();
        assert!(!o.flag);
        assert_eq!(o.name, None);
        // Below the top level, a null is serde's: here an `Option` element.
        assert_eq!(o.nested, Some(vec![Some(1), None]));
        // A null never hides an unknown key.
        let e = typed_options::<O>("t", &map(json!({"bogus": null})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field `bogus`, expected one of `flag`, `name`, `nested`"),
            "{e}"
        );
        // A type that is not a struct loses its top-level nulls too.
        let m: Map<String, Value> = typed_options("t", &map(json!({"a": null, "b": 1}))).unwrap();
        assert_eq!(Value::Object(m), json!({"b": 1}));
        // A nested null where a value is required is still a type error naming its path.
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Strict {
            list: Vec<u32>,
        }
        let e = typed_options::<Strict>("t", &map(json!({"list": [1, null]})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`list[1]`: invalid type: null"), "{e}");
    }

    #[test]
    fn string_enums_take_only_strings() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Mode {
            All,
            Any,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct O {
            #[serde(deserialize_with = "string_enum")]
            mode: Mode,
        }
        let o: O = typed_options("t", &map(json!({"mode": "any"}))).unwrap();
        assert_eq!(o.mode, Mode::Any);
        let e = typed_options::<O>("t", &map(json!({"mode": "some"})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`mode`: unknown variant `some`, expected `all` or `any`"),
            "{e}"
        );
        let e = typed_options::<O>("t", &map(json!({"mode": {"any": null}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`mode`: invalid type: map, expected a string"),
            "{e}"
        );
    }

    #[test]
    fn counts_are_non_negative_integers() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct O {
            #[serde(default, deserialize_with = "count")]
            n: Option<usize>,
        }
        let o: O = typed_options("t", &map(json!({"n": 3}))).unwrap();
        assert_eq!(o.n, Some(3));
        let o: O = typed_options("t", &map(json!({"n": null}))).unwrap();
        assert_eq!(o.n, None);
        let o: O = typed_options("t", &map(json!({}))).unwrap();
        assert_eq!(o.n, None);
        for (bad, want) in [
            (
                json!({"n": -1}),
                "`n`: invalid value: integer `-1`, expected a non-negative integer",
            ),
            (
                json!({"n": 1.5}),
                "`n`: invalid type: floating point `1.5`, expected a non-negative integer",
            ),
            (
                json!({"n": "3"}),
                "`n`: invalid type: string \"3\", expected a non-negative integer",
            ),
        ] {
            let e = typed_options::<O>("t", &map(bad.clone()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
        // Any integer type: the bound is the type's.
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Small {
            #[serde(default, deserialize_with = "count")]
            n: Option<u8>,
        }
        let o: Small = typed_options("t", &map(json!({"n": 255}))).unwrap();
        assert_eq!(o.n, Some(255));
        let e = typed_options::<Small>("t", &map(json!({"n": 256})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`n`: invalid value: integer `256`, expected a non-negative integer"),
            "{e}"
        );
    }

    #[test]
    fn non_empty_and_regex_checks() {
        assert_eq!(non_empty("t", "k", None).unwrap(), None);
        assert_eq!(non_empty("t", "k", Some("x".into())).unwrap().unwrap(), "x");
        let e = non_empty("t", "k", Some(String::new()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("verifier `t`") && e.contains("`k` must not be empty"),
            "{e}"
        );
        assert!(regex_option("t", "r", None).unwrap().is_none());
        assert!(regex_option("t", "r", Some("a+".into())).unwrap().is_some());
        let e = regex_option("t", "r", Some("(".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`r` is not a valid regular expression"), "{e}");
        let e = regex_option("t", "r", Some(String::new()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`r` must not be empty"), "{e}");
    }

    #[test]
    fn unknown_keys_list_the_known_ones() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct O {
            alpha: Option<bool>,
            beta: Option<bool>,
        }
        let e = typed_options::<O>("t", &map(json!({"gamma": 1})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("verifier `t`")
                && e.contains("unknown field `gamma`, expected `alpha` or `beta`"),
            "{e}"
        );
    }
}
