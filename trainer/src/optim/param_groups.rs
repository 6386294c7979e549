//! Which parameters get weight decay and which learning-rate multiplier, decided by parameter
//! name (Hugging Face naming) with glob patterns.
//!
//! # Defaults
//! [`DEFAULT_NO_DECAY`] exempts from weight decay:
//! - biases: `*.bias`;
//! - norm weights: `*norm*.weight` (`input_layernorm`, `post_attention_layernorm`, the final
//!   `model.norm`, Qwen3's `q_norm` / `k_norm`, …);
//! - embeddings: `*embed*.weight` (`model.embed_tokens.weight`, `*.word_embeddings.weight`).
//!
//! `lm_head.weight` is decayed when it is its own parameter (an untied head is a linear layer).
//! A tied head is the embedding's own `Var`: it is stepped once, under the first name it was
//! passed with, and gets no decay if *any* of its names is exempt (so tying `lm_head.weight` to
//! `model.embed_tokens.weight` means no decay on the shared matrix).
//!
//! This differs from `transformers.Trainer`, which decays embeddings; issue 10 asks for no decay
//! on embeddings by default. Set `no_decay` to override.
//!
//! # Patterns
//! A pattern is matched against the whole parameter name; `*` matches any run of characters
//! (dots included) and `?` exactly one. There is no escaping: names never contain `*` or `?`.
//!
//! # Group rules
//! [`GroupRule`]s are tried in order; the first whose pattern matches a name sets that
//! parameter's `lr_scale` and, if given, its `weight_decay` (otherwise the `no_decay` patterns
//! decide as above). A rule that matches no parameter is an error (it is almost always a typo).

use serde::{Deserialize, Serialize};

/// The default no-decay patterns: biases, norm weights and embeddings.
pub const DEFAULT_NO_DECAY: &[&str] = &["*.bias", "*norm*.weight", "*embed*.weight"];

/// The default `no_decay` list as owned strings (for serde defaults).
pub fn default_no_decay() -> Vec<String> {
    DEFAULT_NO_DECAY.iter().map(|s| s.to_string()).collect()
}

/// Whether `name` matches the glob `pattern` (`*` any run, `?` one character, whole name).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    // Position of the last `*` seen and the name index it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// One rule of a parameter-group list: names matching any of `patterns` get `lr_scale` and,
/// when set, `weight_decay`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    /// Glob patterns on parameter names (see the module docs).
    pub patterns: Vec<String>,
    /// Multiplier on the learning rate passed to `AdamW::step` (default 1).
    #[serde(default = "one")]
    pub lr_scale: f64,
    /// This group's weight decay; `None` leaves it to the `no_decay` patterns.
    #[serde(default)]
    pub weight_decay: Option<f64>,
}

fn one() -> f64 {
    1.0
}

/// The hyperparameters one parameter ends up with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupSettings {
    /// Decoupled weight decay coefficient for this parameter.
    pub weight_decay: f64,
    /// Multiplier on the step's learning rate.
    pub lr_scale: f64,
}

/// Resolves `names` (the aliases of one parameter; usually one) to its settings. `hits[i]` is set
/// for every rule that matched one of the names.
pub(crate) fn resolve(
    names: &[&str],
    weight_decay: f64,
    no_decay: &[String],
    rules: &[GroupRule],
    hits: &mut [bool],
) -> GroupSettings {
    let exempt = names
        .iter()
        .any(|n| no_decay.iter().any(|p| glob_match(p, n)));
    let default_wd = if exempt { 0.0 } else { weight_decay };
    for (i, rule) in rules.iter().enumerate() {
        if names
            .iter()
            .any(|n| rule.patterns.iter().any(|p| glob_match(p, n)))
        {
            hits[i] = true;
            return GroupSettings {
                weight_decay: rule.weight_decay.unwrap_or(default_wd),
                lr_scale: rule.lr_scale,
            };
        }
    }
    GroupSettings {
        weight_decay: default_wd,
        lr_scale: 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.bias", "model.layers.0.mlp.up_proj.bias"));
        assert!(!glob_match("*.bias", "model.layers.0.mlp.up_proj.weight"));
        assert!(glob_match(
            "*norm*.weight",
            "model.layers.3.input_layernorm.weight"
        ));
        assert!(glob_match("*norm*.weight", "model.norm.weight"));
        assert!(glob_match(
            "*norm*.weight",
            "model.layers.0.self_attn.q_norm.weight"
        ));
        assert!(glob_match("*embed*.weight", "model.embed_tokens.weight"));
        assert!(!glob_match("*embed*.weight", "lm_head.weight"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYbc"));
        assert!(!glob_match("a*b*c", "aXXbYYb"));
        assert!(glob_match("lm_head.weight", "lm_head.weight"));
    }

    #[test]
    fn defaults_and_rules() {
        let nd = default_no_decay();
        let mut hits = [false; 1];
        let rules = vec![GroupRule {
            patterns: vec!["*norm*.weight".into()],
            lr_scale: 0.5,
            weight_decay: None,
        }];
        let s = resolve(
            &["model.layers.0.mlp.down_proj.weight"],
            0.1,
            &nd,
            &rules,
            &mut hits,
        );
        assert_eq!((s.weight_decay, s.lr_scale), (0.1, 1.0));
        assert!(!hits[0]);
        let s = resolve(&["model.norm.weight"], 0.1, &nd, &rules, &mut hits);
        assert_eq!((s.weight_decay, s.lr_scale), (0.0, 0.5));
        assert!(hits[0]);
        let s = resolve(&["lm_head.weight"], 0.1, &nd, &[], &mut []);
        assert_eq!(s.weight_decay, 0.1);
        // A tied head: no decay because one alias is exempt.
        let s = resolve(
            &["model.embed_tokens.weight", "lm_head.weight"],
            0.1,
            &nd,
            &[],
            &mut [],
        );
        assert_eq!(s.weight_decay, 0.0);
    }
}
