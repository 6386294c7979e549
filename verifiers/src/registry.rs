//! Verifiers by name, and their weighted combination.
//!
//! A task lists verifiers as tables (`name`, `weight`, every other key an option). The
//! [`Registry`] maps each name to a factory that builds the verifier from its options; the
//! [`WeightedVerifiers`] built from a task's list is itself a [`Verifier`] whose reward is
//! `Σ weightᵢ · rewardᵢ`. A user's own verifier in another language is the `command` or `http`
//! plugin, configured like any built-in: no Rust, no rebuild.

use crate::{Group, Score, Verifier, VerifierError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a factory may need besides the options: where relative paths (a plugin's script, a
/// schema file) are resolved.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// Folder relative paths in options are resolved against (the task file's folder).
    pub base_dir: PathBuf,
    /// The registry building the verifier, so that a combinator can build the verifier it
    /// wraps (set by [`Registry::build`]).
    registry: Option<Registry>,
}

impl BuildContext {
    /// A context resolving relative paths against `base_dir`.
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        Self {
            base_dir: base_dir.into(),
            registry: None,
        }
    }

    /// The registry that is building the current verifier (`None` outside
    /// [`Registry::build`]).
    pub fn registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }

    /// `path` resolved against the base folder, made absolute (against the current directory
    /// when the base folder is itself relative), so that a plugin started in another working
    /// directory still finds it. Absolute paths are kept.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() {
            return p;
        }
        let joined = self.base_dir.join(p);
        if joined.is_absolute() {
            return joined;
        }
        match std::env::current_dir() {
            Ok(here) => here.join(joined),
            Err(_) => joined,
        }
    }
}

/// Builds one verifier from its options (the table without `name` and `weight`).
pub type Factory =
    fn(&Map<String, Value>, &BuildContext) -> Result<Box<dyn Verifier>, VerifierError>;

/// Verifier factories by name.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("names", &self.names())
            .finish()
    }
}

impl Registry {
    /// A registry with nothing in it.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every built-in verifier and plugin kind.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.register("math", |o, _| {
            Ok(Box::new(crate::MathVerifier::from_config(&Value::Object(
                o.clone(),
            ))?))
        });
        // exact, contains, regex, choice, format, json_schema, length, arith.
        crate::builtin::register(&mut r);
        // ToolRL's format + correctness reward for tool calls.
        r.register("tool_call", |o, ctx| {
            Ok(Box::new(crate::tool::ToolCallVerifier::from_options(
                o, ctx,
            )?))
        });
        // Efficiency combinators over another verifier's score (OTC, GRPO-λ).
        crate::efficiency::register(&mut r);
        // Runs model-written programs against test cases in the sandbox (Linux only).
        #[cfg(target_os = "linux")]
        r.register("code", |o, _| {
            Ok(Box::new(crate::code::CodeVerifier::from_options(o)?))
        });
        r.register("command", |o, ctx| {
            Ok(Box::new(crate::plugin::CommandVerifier::from_options(
                o, ctx,
            )?))
        });
        r.register("http", |o, ctx| {
            Ok(Box::new(crate::plugin::HttpVerifier::from_options(o, ctx)?))
        });
        r
    }

    /// Adds (or replaces) the factory for `name`.
    pub fn register(&mut self, name: &str, factory: Factory) {
        self.factories.insert(name.to_string(), factory);
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// Builds the verifier `name` from its options.
    pub fn build(
        &self,
        name: &str,
        options: &Map<String, Value>,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Verifier>, VerifierError> {
        let factory = self
            .factories
            .get(name)
            .ok_or_else(|| VerifierError::Unknown {
                name: name.to_string(),
                known: self.names().join(", "),
            })?;
        let ctx = BuildContext {
            base_dir: ctx.base_dir.clone(),
            registry: Some(self.clone()),
        };
        factory(options, &ctx)
    }

    /// Builds the weighted combination of verifier tables (`{"name", "weight"?, ...options}`;
    /// weight defaults to 1). A name used twice gets the label `name#i` (its position).
    pub fn build_weighted(
        &self,
        specs: &[Value],
        ctx: &BuildContext,
    ) -> Result<WeightedVerifiers, VerifierError> {
        let mut members: Vec<WeightedMember> = Vec::with_capacity(specs.len());
        for (i, spec) in check_specs(specs, "verifiers")?.into_iter().enumerate() {
            let VerifierSpec {
                name,
                weight,
                options,
            } = spec;
            let name = name.as_str();
            let verifier = self.build(name, &options, ctx)?;
            let label = if members.iter().any(|m| m.label == name) {
                format!("{name}#{i}")
            } else {
                name.to_string()
            };
            members.push(WeightedMember {
                label,
                weight,
                verifier,
            });
        }
        if members.is_empty() {
            return Err(VerifierError::Config {
                verifier: "verifiers".into(),
                message: "no verifiers given".into(),
            });
        }
        Ok(WeightedVerifiers { members })
    }
}

/// One verifier table split into its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifierSpec {
    /// The registered name.
    pub name: String,
    /// Its weight in the reward (default 1).
    pub weight: f32,
    /// Every other key of the table.
    pub options: Map<String, Value>,
}

impl VerifierSpec {
    /// Reads a table `{"name", "weight"?, ...options}`; `at` names it in errors
    /// (`verifiers[2]`, `task.verifiers[2]`). The one place the name and weight rules live.
    pub fn parse(spec: &Value, at: &str) -> Result<Self, VerifierError> {
        let table = spec
            .as_object()
            .ok_or_else(|| VerifierError::Table(format!("{at}: expected a table, got {spec}")))?;
        let name = table
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| VerifierError::Table(format!("{at} needs a string `name`")))?;
        let weight = match table.get("weight") {
            None => 1.0,
            Some(w) => w.as_f64().filter(|w| w.is_finite()).ok_or_else(|| {
                VerifierError::Table(format!("{at}: `weight` must be a number (finite), got {w}"))
            })?,
        } as f32;
        let mut options = table.clone();
        options.remove("name");
        options.remove("weight");
        Ok(Self {
            name: name.to_string(),
            weight,
            options,
        })
    }
}

/// Checks the shape of every table of a list named `list` in errors (`task.verifiers`) without
/// building anything, and splits them.
pub fn check_specs(specs: &[Value], list: &str) -> Result<Vec<VerifierSpec>, VerifierError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| VerifierSpec::parse(spec, &format!("{list}[{i}]")))
        .collect()
}

/// One verifier of a combination, with its weight and component label.
pub struct WeightedMember {
    /// Its name in components (`math`, or `math#2` when a name repeats).
    pub label: String,
    /// Its weight in the reward.
    pub weight: f32,
    /// The verifier.
    pub verifier: Box<dyn Verifier>,
}

/// A weighted sum of verifiers, itself a verifier.
///
/// Reward = `Σ weightᵢ · rewardᵢ`. Components: `<label>` = that verifier's reward and
/// `<label>.<component>` for each of its components. A member that fails on an item adds its
/// own reward (normally 0) and its error, prefixed with its label; the other members still
/// count. A member that returns the wrong number of scores is treated as failing on every item
/// of that group.
pub struct WeightedVerifiers {
    members: Vec<WeightedMember>,
}

impl WeightedVerifiers {
    /// The members, in order.
    pub fn members(&self) -> &[WeightedMember] {
        &self.members
    }

    /// A combination of the given members.
    pub fn new(members: Vec<WeightedMember>) -> Self {
        Self { members }
    }
}

impl Verifier for WeightedVerifiers {
    fn name(&self) -> &str {
        "weighted"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        let mut out: Vec<Vec<Score>> = groups
            .iter()
            .map(|g| vec![Score::default(); g.completions.len()])
            .collect();
        let mut errors: Vec<Vec<Vec<String>>> = groups
            .iter()
            .map(|g| vec![Vec::new(); g.completions.len()])
            .collect();
        for m in &self.members {
            let mut scores = m.verifier.score(groups);
            if scores.len() != groups.len() {
                scores = groups
                    .iter()
                    .map(|g| {
                        vec![
                            Score::failed(format!(
                                "returned scores for {} groups, expected {}",
                                scores.len(),
                                groups.len()
                            ));
                            g.completions.len()
                        ]
                    })
                    .collect();
            }
            for (gi, (group, got)) in groups.iter().zip(scores).enumerate() {
                let n = group.completions.len();
                let got = if got.len() == n {
                    got
                } else {
                    vec![Score::failed(format!("returned {} scores, expected {n}", got.len())); n]
                };
                for (ci, s) in got.into_iter().enumerate() {
                    let reward = if s.reward.is_finite() { s.reward } else { 0.0 };
                    let dst = &mut out[gi][ci];
                    dst.reward += m.weight * reward;
                    dst.components.insert(m.label.clone(), reward);
                    for (k, v) in s.components {
                        dst.components.insert(format!("{}.{k}", m.label), v);
                    }
                    if !s.reward.is_finite() {
                        errors[gi][ci].push(format!("{}: non-finite reward {}", m.label, s.reward));
                    }
                    if let Some(e) = s.error {
                        errors[gi][ci].push(format!("{}: {e}", m.label));
                    }
                }
            }
        }
        for (g, errs) in out.iter_mut().zip(errors) {
            for (s, e) in g.iter_mut().zip(errs) {
                if !e.is_empty() {
                    s.error = Some(e.join("; "));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VerifyExample;
    use serde_json::json;

    fn group(answer: &str, completions: &[&str]) -> Group {
        Group {
            example: VerifyExample {
                answer: Some(answer.into()),
                ..VerifyExample::default()
            },
            completions: completions.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A verifier that fails every item, to test error propagation.
    struct Failing;
    impl Verifier for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
            groups
                .iter()
                .map(|g| vec![Score::failed("boom"); g.completions.len()])
                .collect()
        }
    }

    /// A verifier that returns one score too few.
    struct Short;
    impl Verifier for Short {
        fn name(&self) -> &str {
            "short"
        }
        fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
            groups
                .iter()
                .map(|g| vec![Score::reward(1.0); g.completions.len().saturating_sub(1)])
                .collect()
        }
    }

    #[test]
    fn relative_paths_resolve_to_absolute_ones() {
        let here = std::env::current_dir().unwrap();
        let ctx = BuildContext::new("examples/tasks");
        assert_eq!(
            ctx.resolve("../plugins/p.py"),
            here.join("examples/tasks/../plugins/p.py")
        );
        assert_eq!(ctx.resolve("/abs/p.py"), PathBuf::from("/abs/p.py"));
        assert_eq!(BuildContext::default().resolve("p.py"), here.join("p.py"));
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let r = Registry::builtin();
        let err = r
            .build("maths", &Map::new(), &BuildContext::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown verifier `maths`"), "{err}");
        assert!(err.contains("math"), "{err}");
    }

    #[test]
    fn weighted_sum_and_components() {
        let r = Registry::builtin();
        let specs = [
            json!({"name": "math", "weight": 0.75}),
            json!({"name": "math", "weight": 0.25, "allow_last_number": false}),
        ];
        let w = r.build_weighted(&specs, &BuildContext::default()).unwrap();
        let labels: Vec<&str> = w.members().iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, ["math", "math#1"]);
        let s = w.score(&[group("12", &["\\boxed{12}", "so it is 12.", "13"])]);
        assert_eq!(s[0][0].reward, 1.0);
        // The second member does not fall back to the last number.
        assert_eq!(s[0][1].reward, 0.75);
        assert_eq!(s[0][1].components["math"], 1.0);
        assert_eq!(s[0][1].components["math#1"], 0.0);
        assert_eq!(s[0][1].components["math.correct"], 1.0);
        assert_eq!(s[0][2].reward, 0.0);
        assert!(s.iter().flatten().all(|s| s.error.is_none()));
    }

    #[test]
    fn failing_and_miscounting_members_are_recorded_not_fatal() {
        let r = Registry::builtin();
        let math = r
            .build("math", &Map::new(), &BuildContext::default())
            .unwrap();
        let w = WeightedVerifiers::new(vec![
            WeightedMember {
                label: "math".into(),
                weight: 1.0,
                verifier: math,
            },
            WeightedMember {
                label: "failing".into(),
                weight: 2.0,
                verifier: Box::new(Failing),
            },
            WeightedMember {
                label: "short".into(),
                weight: 1.0,
                verifier: Box::new(Short),
            },
        ]);
        let s = w.score(&[group("3", &["\\boxed{3}", "\\boxed{4}"])]);
        assert_eq!(s[0][0].reward, 1.0);
        let err = s[0][0].error.as_deref().unwrap();
        assert!(err.contains("failing: boom"), "{err}");
        assert!(
            err.contains("short: returned 1 scores, expected 2"),
            "{err}"
        );
        assert_eq!(s[0][1].reward, 0.0);
    }

    #[test]
    fn bad_tables_are_config_errors() {
        let r = Registry::builtin();
        let ctx = BuildContext::default();
        for (spec, want) in [
            (json!({"weight": 1}), "needs a string `name`"),
            (json!({"name": "math", "weight": "x"}), "`weight` must be"),
            (json!(3), "expected a table"),
            (
                json!({"name": "math", "bogus": 1}),
                "unknown field `bogus`, expected one of `extract`",
            ),
        ] {
            let err = r.build_weighted(&[spec], &ctx).err().unwrap().to_string();
            assert!(err.contains(want), "{err}");
        }
        assert!(r.build_weighted(&[], &ctx).is_err());
    }
}
