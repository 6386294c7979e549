//! The `json_schema` verifier: the completion (or a JSON block inside it) must parse as JSON and
//! validate against a JSON Schema given inline, per example in metadata, or in a file. An
//! invalid completion is a reward of 0 with components, never an error; `Score::error` is only
//! for a broken or missing schema.

use super::bin;
use super::options::{config_error, non_empty, string_enum, typed_options};
use crate::extract::fenced_blocks;
use crate::{BuildContext, Group, Score, Verifier, VerifierError};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Where in the completion the JSON document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Extract {
    /// The whole completion (trimmed).
    #[default]
    None,
    /// The first ```` ```json ```` (else the first ```` ``` ````) fenced block, else the whole
    /// completion.
    Fenced,
    /// The whole completion if it parses, else the first fenced block, else the first balanced
    /// `{...}`.
    Auto,
}

/// The options table of `json_schema`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSchemaOptions {
    /// An inline schema.
    schema: Option<Value>,
    /// A metadata field holding each example's schema.
    schema_field: Option<String>,
    /// A schema file, relative to the task file's folder.
    schema_path: Option<String>,
    #[serde(default, deserialize_with = "string_enum")]
    extract: Extract,
    /// Check `format` keywords (default: annotations only).
    #[serde(default)]
    validate_formats: bool,
}

/// Where the schema comes from.
enum SchemaSource {
    /// Compiled once at build time (inline or from a file).
    Fixed(Box<jsonschema::Validator>),
    /// A metadata field of each example (a JSON object or JSON text), compiled per group.
    Field(String),
}

/// `json_schema`: reward 1 iff the completion is JSON valid against the schema.
pub struct JsonSchemaVerifier {
    source: SchemaSource,
    extract: Extract,
    validate_formats: bool,
}

impl std::fmt::Debug for JsonSchemaVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchemaVerifier")
            .field("extract", &self.extract)
            .field("validate_formats", &self.validate_formats)
            .finish_non_exhaustive()
    }
}

/// Compiles a schema; `Err` is the reason it is not a usable schema.
fn compile_schema(schema: &Value, validate_formats: bool) -> Result<jsonschema::Validator, String> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(format!(
            "a schema must be a JSON object or boolean, got {schema}"
        ));
    }
    jsonschema::options()
        .should_validate_formats(validate_formats)
        .build(schema)
        .map_err(|e| format!("invalid JSON Schema: {e}"))
}

impl JsonSchemaVerifier {
    /// Builds the verifier from its options (`schema` | `schema_field` | `schema_path`,
    /// `extract`, `validate_formats`).
    pub fn from_options(
        options: &Map<String, Value>,
        ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let err = |m: String| config_error("json_schema", m);
        let o: JsonSchemaOptions = typed_options("json_schema", options)?;
        let validate_formats = o.validate_formats;
        let given = [
            o.schema.is_some(),
            o.schema_field.is_some(),
            o.schema_path.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(err(
                "give exactly one of `schema`, `schema_field` and `schema_path`".into(),
            ));
        }
        let source = if let Some(schema) = &o.schema {
            let v = compile_schema(schema, validate_formats)
                .map_err(|e| err(format!("`schema`: {e}")))?;
            SchemaSource::Fixed(Box::new(v))
        } else if let Some(field) = non_empty("json_schema", "schema_field", o.schema_field)? {
            SchemaSource::Field(field)
        } else {
            let path = non_empty("json_schema", "schema_path", o.schema_path)?
                .ok_or_else(|| err("`schema_path` must not be empty".into()))?;
            let full = ctx.resolve(&path);
            let text = std::fs::read_to_string(&full).map_err(|source| VerifierError::Io {
                verifier: format!("json_schema (schema_path {})", full.display()),
                source,
            })?;
            let schema: Value = serde_json::from_str(&text)
                .map_err(|e| err(format!("`schema_path` {}: not JSON: {e}", full.display())))?;
            let v = compile_schema(&schema, validate_formats)
                .map_err(|e| err(format!("`schema_path` {}: {e}", full.display())))?;
            SchemaSource::Fixed(Box::new(v))
        };
        Ok(Self {
            source,
            extract: o.extract,
            validate_formats,
        })
    }

    /// The JSON document of a completion, if one parses.
    fn document(&self, completion: &str) -> Option<Value> {
        let parse = |s: &str| serde_json::from_str::<Value>(s.trim()).ok();
        match self.extract {
            Extract::None => parse(completion),
            Extract::Fenced => match fenced_block(completion) {
                Some(b) => parse(&b),
                None => parse(completion),
            },
            Extract::Auto => parse(completion)
                .or_else(|| fenced_block(completion).and_then(|b| parse(&b)))
                .or_else(|| first_balanced_object(completion).and_then(parse)),
        }
    }

    /// Scores one completion with a compiled schema.
    fn score_with(&self, validator: &jsonschema::Validator, completion: &str) -> Score {
        let doc = self.document(completion);
        let valid = doc.as_ref().is_some_and(|d| validator.is_valid(d));
        let mut s = Score::reward(bin(valid));
        s.components.insert("parsed".into(), bin(doc.is_some()));
        s.components.insert("valid".into(), bin(valid));
        s
    }

    /// The compiled schema of one example's metadata field.
    fn field_schema(
        &self,
        field: &str,
        metadata: &Map<String, Value>,
    ) -> Result<jsonschema::Validator, String> {
        let schema = match metadata.get(field) {
            None | Some(Value::Null) => {
                return Err(format!(
                    "the example has no schema in metadata field `{field}`"
                ))
            }
            Some(Value::String(text)) => serde_json::from_str::<Value>(text)
                .map_err(|e| format!("metadata field `{field}` is not JSON: {e}"))?,
            Some(v) => v.clone(),
        };
        compile_schema(&schema, self.validate_formats)
            .map_err(|e| format!("metadata field `{field}`: {e}"))
    }
}

/// The content of the first closed ```` ```json ```` fenced block, else of the first closed
/// fenced block.
fn fenced_block(text: &str) -> Option<String> {
    let blocks: Vec<_> = fenced_blocks(text)
        .into_iter()
        .filter(|b| b.closed)
        .collect();
    let first_json = blocks
        .iter()
        .position(|b| b.tag.eq_ignore_ascii_case("json"));
    blocks
        .into_iter()
        .nth(first_json.unwrap_or(0))
        .map(|b| b.body)
}

/// The first balanced `{...}` of the text (braces inside JSON strings do not count).
fn first_balanced_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, ch) in text[start..].char_indices() {
        if in_string {
            match ch {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..start + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

impl Verifier for JsonSchemaVerifier {
    fn name(&self) -> &str {
        "json_schema"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        groups
            .iter()
            .map(|g| match &self.source {
                SchemaSource::Fixed(v) => g
                    .completions
                    .iter()
                    .map(|c| self.score_with(v, c))
                    .collect(),
                SchemaSource::Field(field) => match self.field_schema(field, &g.example.metadata) {
                    Ok(v) => g
                        .completions
                        .iter()
                        .map(|c| self.score_with(&v, c))
                        .collect(),
                    Err(e) => vec![Score::failed(format!("json_schema: {e}")); g.completions.len()],
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VerifyExample;
    use serde_json::json;

    fn build(v: Value) -> Result<JsonSchemaVerifier, VerifierError> {
        JsonSchemaVerifier::from_options(
            &v.as_object().cloned().unwrap_or_default(),
            &BuildContext::default(),
        )
    }

    fn person() -> Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer", "minimum": 0}
            },
            "required": ["name", "age"],
            "additionalProperties": false
        })
    }

    fn score(v: &JsonSchemaVerifier, completions: &[&str]) -> Vec<Score> {
        let g = Group {
            example: VerifyExample::default(),
            completions: completions.iter().map(|s| s.to_string()).collect(),
        };
        v.score(&[g]).remove(0)
    }

    #[test]
    fn inline_schema_strict_extraction() {
        let v = build(json!({"schema": person()})).unwrap();
        let cases = [
            (r#"{"name": "Ada", "age": 36}"#, 1.0, 1.0),
            ("  {\"name\": \"Ada\", \"age\": 0}\n", 1.0, 1.0),
            (r#"{"name": "Ada", "age": -1}"#, 1.0, 0.0),
            (r#"{"name": "Ada", "age": 3.5}"#, 1.0, 0.0),
            (r#"{"name": "Ada"}"#, 1.0, 0.0),
            (r#"{"name": "Ada", "age": 1, "x": 1}"#, 1.0, 0.0),
            (r#"[1, 2]"#, 1.0, 0.0),
            (r#"{"name": "Ada", "age": 36"#, 0.0, 0.0),
            ("```json\n{\"name\": \"Ada\", \"age\": 36}\n```", 0.0, 0.0),
            (r#"Here: {"name": "Ada", "age": 36}"#, 0.0, 0.0),
            ("", 0.0, 0.0),
        ];
        let got = score(&v, &cases.iter().map(|c| c.0).collect::<Vec<_>>());
        for ((c, parsed, valid), s) in cases.iter().zip(got) {
            assert_eq!(s.components["parsed"], *parsed, "{c:?}");
            assert_eq!(s.components["valid"], *valid, "{c:?}");
            assert_eq!(s.reward, *valid, "{c:?}");
            assert!(s.error.is_none(), "{c:?}");
        }
    }

    #[test]
    fn fenced_and_auto_extraction() {
        let fenced = build(json!({"schema": person(), "extract": "fenced"})).unwrap();
        let auto = build(json!({"schema": person(), "extract": "auto"})).unwrap();
        let cases = [
            // (completion, fenced valid, auto valid)
            (r#"{"name": "Ada", "age": 36}"#, 1.0, 1.0),
            (
                "Sure:\n```json\n{\"name\": \"Ada\", \"age\": 36}\n```\nDone.",
                1.0,
                1.0,
            ),
            ("```\n{\"name\": \"Ada\", \"age\": 36}\n```", 1.0, 1.0),
            (
                "```python\nx = 1\n```\n```JSON\n{\"name\": \"Ada\", \"age\": 36}\n```",
                1.0,
                1.0,
            ),
            ("```json\n{\"name\": \"Ada\"}\n```", 0.0, 0.0),
            (
                "Here you go: {\"name\": \"A}da\", \"age\": 36} hope it helps {",
                0.0,
                1.0,
            ),
            ("{\"name\": \"Ada\", \"age\": 36", 0.0, 0.0),
            ("no json at all", 0.0, 0.0),
            ("```json\n{\"name\": \"Ada\", \"age\": 36}", 0.0, 1.0),
        ];
        let comps: Vec<&str> = cases.iter().map(|c| c.0).collect();
        for (((c, f, a), sf), sa) in cases
            .iter()
            .zip(score(&fenced, &comps))
            .zip(score(&auto, &comps))
        {
            assert_eq!(sf.reward, *f, "fenced {c:?}");
            assert_eq!(sa.reward, *a, "auto {c:?}");
        }
    }

    #[test]
    fn schema_from_metadata_and_file() {
        let v = build(json!({"schema_field": "schema"})).unwrap();
        let group = |schema: Option<Value>, completions: &[&str]| {
            let mut example = VerifyExample::default();
            if let Some(s) = schema {
                example.metadata.insert("schema".into(), s);
            }
            Group {
                example,
                completions: completions.iter().map(|s| s.to_string()).collect(),
            }
        };
        let out = v.score(&[
            group(Some(json!({"type": "integer"})), &["5", "\"5\""]),
            group(Some(json!("{\"type\": \"string\"}")), &["5", "\"5\""]),
            group(None, &["5"]),
            group(Some(json!({"type": 12})), &["5", "6"]),
            group(Some(json!("not json")), &["5"]),
            group(Some(json!([1])), &["5"]),
        ]);
        assert_eq!(out[0][0].reward, 1.0);
        assert_eq!(out[0][1].reward, 0.0);
        assert_eq!(out[1][0].reward, 0.0);
        assert_eq!(out[1][1].reward, 1.0);
        assert!(out[2][0].error.as_deref().unwrap().contains("no schema"));
        assert_eq!(out[3].len(), 2);
        assert!(out[3][1]
            .error
            .as_deref()
            .unwrap()
            .contains("invalid JSON Schema"));
        assert!(out[4][0].error.as_deref().unwrap().contains("not JSON"));
        assert!(out[5][0].error.is_some());
        assert!(out
            .iter()
            .flatten()
            .all(|s| s.reward == 0.0 || s.error.is_none()));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("s.json"),
            r#"{"type": "array", "maxItems": 2}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.json"), "{").unwrap();
        let ctx = BuildContext::new(dir.path());
        let opts = |p: &str| {
            json!({"schema_path": p})
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        let v = JsonSchemaVerifier::from_options(&opts("s.json"), &ctx).unwrap();
        let s = score(&v, &["[1, 2]", "[1, 2, 3]"]);
        assert_eq!((s[0].reward, s[1].reward), (1.0, 0.0));
        assert!(matches!(
            JsonSchemaVerifier::from_options(&opts("missing.json"), &ctx),
            Err(VerifierError::Io { .. })
        ));
        assert!(matches!(
            JsonSchemaVerifier::from_options(&opts("bad.json"), &ctx),
            Err(VerifierError::Config { .. })
        ));
    }

    #[test]
    fn formats_are_annotations_unless_asked() {
        let schema = json!({"type": "string", "format": "email"});
        let lax = build(json!({"schema": schema})).unwrap();
        let strict = build(json!({"schema": schema, "validate_formats": true})).unwrap();
        let c = ["\"a@b.org\"", "\"not an email\""];
        let l = score(&lax, &c);
        let s = score(&strict, &c);
        assert_eq!((l[0].reward, l[1].reward), (1.0, 1.0));
        assert_eq!((s[0].reward, s[1].reward), (1.0, 0.0));
    }

    #[test]
    fn config_errors() {
        let one = "give exactly one of `schema`, `schema_field` and `schema_path`";
        let invalid = "`schema`: invalid JSON Schema";
        for (bad, want) in [
            (json!({}), one),
            (json!({"schema": person(), "schema_field": "s"}), one),
            (json!({"schema": {"type": "nonsense"}}), invalid),
            (json!({"schema": {"minimum": "five"}}), invalid),
            (
                json!({"schema": "a string"}),
                "`schema`: a schema must be a JSON object or boolean",
            ),
            (
                json!({"schema": person(), "extract": "braces"}),
                "`extract`: unknown variant `braces`, expected one of `none`, `fenced`, `auto`",
            ),
            (
                json!({"schema": person(), "validate_formats": 1}),
                "`validate_formats`: invalid type: integer `1`, expected a boolean",
            ),
            (
                json!({"schema_field": ""}),
                "`schema_field` must not be empty",
            ),
            (
                json!({"schema": person(), "strict": true}),
                "unknown field `strict`, expected one of `schema`, `schema_field`, \
                 `schema_path`, `extract`, `validate_formats`",
            ),
        ] {
            let e = build(bad.clone());
            assert!(matches!(e, Err(VerifierError::Config { .. })), "{bad}");
            let e = e.unwrap_err().to_string();
            assert!(
                e.contains("verifier `json_schema`") && e.contains(want),
                "{bad}: {e}"
            );
        }
        // A null option is absent: it does not count as a second schema source.
        let v = build(json!({"schema": null, "schema_field": "s", "extract": null})).unwrap();
        assert_eq!(v.extract, Extract::None);
        // A boolean schema is a schema.
        let any = build(json!({"schema": true})).unwrap();
        assert_eq!(score(&any, &["1"])[0].reward, 1.0);
        // Remote references are never fetched.
        let remote = build(json!({"schema": {"$ref": "http://127.0.0.1:9/s.json"}}));
        assert!(remote.is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let v = build(json!({"schema": person(), "extract": "auto"})).unwrap();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_obj = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        let braces = "{".repeat(100_000);
        let fences = "```".repeat(10_000);
        let huge = format!("{{\"name\": \"{}\", \"age\": 1}}", "x".repeat(1_000_000));
        let cases = [
            "",
            "\u{0}",
            "\u{fffd}{\"\\",
            deep.as_str(),
            deep_obj.as_str(),
            braces.as_str(),
            fences.as_str(),
            "```json",
            "```json\n",
            "{\"name\": \"\u{10ffff}\", \"age\": 1}",
            huge.as_str(),
        ];
        let out = score(&v, &cases);
        for (c, s) in cases.iter().zip(&out) {
            assert!(s.reward == 0.0 || s.reward == 1.0, "{}", c.len());
            assert!(s.error.is_none());
        }
        assert_eq!(out[9].reward, 1.0);
        assert_eq!(out[10].reward, 1.0);
    }
}
