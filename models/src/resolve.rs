//! Model-argument resolution: what a user passes as `--model` (a local HF-layout directory, a
//! `.gguf` file, or a Hugging Face model id such as `HuggingFaceTB/SmolLM2-135M-Instruct`) becomes
//! files on disk. Ids are looked up in the local hf-hub cache only; this build never downloads.

use crate::error::{ModelError, Result};
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

/// Where a model's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An HF-layout directory holding `config.json`, weights and tokenizer files.
    Dir(PathBuf),
    /// A single GGUF file.
    Gguf(PathBuf),
}

impl ModelSource {
    /// The directory or file.
    pub fn path(&self) -> &Path {
        match self {
            Self::Dir(p) | Self::Gguf(p) => p,
        }
    }
}

/// The hf-hub cache directory from explicit environment values: `HF_HUB_CACHE`, else
/// `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir_from(
    hf_hub_cache: Option<&str>,
    hf_home: Option<&str>,
    home: Option<&Path>,
) -> PathBuf {
    if let Some(c) = hf_hub_cache.filter(|s| !s.is_empty()) {
        return PathBuf::from(c);
    }
    if let Some(h) = hf_home.filter(|s| !s.is_empty()) {
        return Path::new(h).join("hub");
    }
    home.map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache")
        .join("huggingface")
        .join("hub")
}

/// The hf-hub cache directory of this process's environment (`HF_HUB_CACHE` / `HF_HOME` /
/// `~/.cache/huggingface/hub`).
pub fn hf_cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var(k).ok();
    let home = var("HOME").map(PathBuf::from);
    cache_dir_from(
        var("HF_HUB_CACHE").as_deref(),
        var("HF_HOME").as_deref(),
        home.as_deref(),
    )
}

fn offline_env() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE")
            .ok()
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("1" | "true" | "yes" | "on")
    )
}

/// Resolves `spec` against the local file system and the hf-hub cache of the environment.
pub fn resolve_model(spec: &str) -> Result<ModelSource> {
    resolve_model_in(spec, &hf_cache_dir(), offline_env())
}

fn resolve_err(spec: &str, message: impl Into<String>) -> ModelError {
    ModelError::Resolve {
        spec: spec.to_string(),
        message: message.into(),
    }
}

fn is_gguf(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Splits an HF id `owner/name[@revision]`; `None` when `spec` is not shaped like one.
fn parse_hf_id(spec: &str) -> Option<(String, Option<String>)> {
    let (id, rev) = match spec.split_once('@') {
        Some((id, rev)) if !rev.is_empty() => (id, Some(rev.to_string())),
        Some(_) => return None,
        None => (spec, None),
    };
    let (owner, name) = id.split_once('/')?;
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with(['.', '-'])
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (ok(owner) && ok(name)).then(|| (id.to_string(), rev))
}

/// Resolves `spec` with an explicit cache directory; `offline` only changes the error text
/// (this build has no download support either way).
pub fn resolve_model_in(spec: &str, cache_dir: &Path, offline: bool) -> Result<ModelSource> {
    let path = Path::new(spec);
    if path.is_dir() {
        return if path.join("config.json").is_file() {
            Ok(ModelSource::Dir(path.to_path_buf()))
        } else {
            Err(resolve_err(
                spec,
                format!("directory {} has no config.json", path.display()),
            ))
        };
    }
    if path.is_file() {
        if is_gguf(path) {
            return Ok(ModelSource::Gguf(path.to_path_buf()));
        }
        if path.file_name().is_some_and(|n| n == "config.json") {
            let dir = path.parent().unwrap_or(Path::new("."));
            return Ok(ModelSource::Dir(dir.to_path_buf()));
        }
        return Err(resolve_err(
            spec,
            "a file that is neither a .gguf model nor a config.json; pass the model directory",
        ));
    }
    let looks_like_path = is_gguf(path)
        || spec.starts_with(['/', '.', '~'])
        || spec.contains('\\')
        || spec.matches('/').count() != 1;
    let Some((id, revision)) = parse_hf_id(spec).filter(|_| !looks_like_path) else {
        return Err(resolve_err(
            spec,
            "no such file or directory, and not a Hugging Face model id (`owner/name`)",
        ));
    };
    lookup_cache(spec, &id, revision.as_deref(), cache_dir, offline)
}

fn lookup_cache(
    spec: &str,
    id: &str,
    revision: Option<&str>,
    cache_dir: &Path,
    offline: bool,
) -> Result<ModelSource> {
    let rev = revision.unwrap_or("main");
    let repo = Repo::with_revision(id.to_string(), RepoType::Model, rev.to_string());
    let repo_dir = cache_dir.join(repo.folder_name());
    let cache = Cache::new(cache_dir.to_path_buf());
    let snapshot = match cache.repo(repo.clone()).get("config.json") {
        Some(cfg) => cfg.parent().map(Path::to_path_buf),
        None => {
            // hf-hub does not trim the ref file and does not take a commit hash as revision.
            let by_ref = std::fs::read_to_string(repo_dir.join("refs").join(rev))
                .ok()
                .map(|h| repo_dir.join("snapshots").join(h.trim()));
            let by_hash = Some(repo_dir.join("snapshots").join(rev));
            by_ref.into_iter().chain(by_hash).find(|d| d.is_dir())
        }
    };
    if let Some(dir) = snapshot {
        if dir.join("config.json").is_file() {
            return Ok(ModelSource::Dir(dir));
        }
        // GGUF-only repositories: one .gguf file in the snapshot.
        let ggufs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| is_gguf(p))
                    .collect()
            })
            .unwrap_or_default();
        match ggufs.as_slice() {
            [one] => return Ok(ModelSource::Gguf(one.clone())),
            [] => {}
            many => {
                let mut names: Vec<String> = many
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
                names.sort();
                return Err(resolve_err(
                    spec,
                    format!(
                        "snapshot {} has no config.json and several GGUF files ({}); pass one file path",
                        dir.display(),
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    let why = if offline {
        "HF_HUB_OFFLINE is set, so no download is attempted"
    } else {
        "this build of oxrl does not download models"
    };
    Err(resolve_err(
        spec,
        format!(
            "`{id}` (revision `{rev}`) is not in the local Hugging Face cache: searched {} for {}/snapshots/<commit>/config.json. \
             {why}; download it first with `huggingface-cli download {id}` (set HF_HOME or HF_HUB_CACHE if your cache is elsewhere), \
             or pass a local model directory or .gguf file",
            cache_dir.display(),
            repo.folder_name(),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_snapshot(
        cache: &Path,
        id: &str,
        commit: &str,
        files: &[&str],
        ref_text: &str,
    ) -> PathBuf {
        let repo = cache.join(format!("models--{}", id.replace('/', "--")));
        let snap = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), ref_text).unwrap();
        for f in files {
            std::fs::write(snap.join(f), "{}").unwrap();
        }
        snap
    }

    #[test]
    fn cache_dir_precedence() {
        let home = Path::new("/home/u");
        assert_eq!(
            cache_dir_from(Some("/c"), Some("/h"), Some(home)),
            PathBuf::from("/c")
        );
        assert_eq!(
            cache_dir_from(None, Some("/h"), Some(home)),
            PathBuf::from("/h/hub")
        );
        assert_eq!(
            cache_dir_from(Some(""), None, Some(home)),
            PathBuf::from("/home/u/.cache/huggingface/hub")
        );
    }

    #[test]
    fn resolves_local_dir_gguf_and_config() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let model = d.path().join("m");
        std::fs::create_dir_all(&model).unwrap();
        let s = model.to_str().unwrap();
        let err = resolve_model_in(s, &cache, false).unwrap_err().to_string();
        assert!(err.contains("has no config.json"), "{err}");
        std::fs::write(model.join("config.json"), "{}").unwrap();
        assert_eq!(
            resolve_model_in(s, &cache, false).unwrap(),
            ModelSource::Dir(model.clone())
        );
        let cfg = model.join("config.json");
        assert_eq!(
            resolve_model_in(cfg.to_str().unwrap(), &cache, false).unwrap(),
            ModelSource::Dir(model.clone())
        );
        let g = d.path().join("x.Q4_1.GGUF");
        std::fs::write(&g, "GGUF").unwrap();
        assert_eq!(
            resolve_model_in(g.to_str().unwrap(), &cache, false).unwrap(),
            ModelSource::Gguf(g.clone())
        );
        let missing = d.path().join("nope.gguf");
        let err = resolve_model_in(missing.to_str().unwrap(), &cache, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such file"), "{err}");
        let err = resolve_model_in("./rel/a", &cache, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such file"), "{err}");
    }

    #[test]
    fn resolves_hf_ids_from_cache() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path();
        let snap = fake_snapshot(cache, "Org/Model-1.5", "abc123", &["config.json"], "abc123");
        assert_eq!(
            resolve_model_in("Org/Model-1.5", cache, false).unwrap(),
            ModelSource::Dir(snap.clone())
        );
        // Ref with a trailing newline, revision given as a commit hash.
        let snap2 = fake_snapshot(cache, "a/b", "def456", &["config.json"], "def456\n");
        assert_eq!(
            resolve_model_in("a/b", cache, false).unwrap(),
            ModelSource::Dir(snap2.clone())
        );
        assert_eq!(
            resolve_model_in("a/b@def456", cache, false).unwrap(),
            ModelSource::Dir(snap2)
        );
        // GGUF-only repository.
        let snap3 = fake_snapshot(cache, "q/m-GGUF", "c0", &["m.Q8_0.gguf"], "c0");
        assert_eq!(
            resolve_model_in("q/m-GGUF", cache, false).unwrap(),
            ModelSource::Gguf(snap3.join("m.Q8_0.gguf"))
        );
        fake_snapshot(cache, "q/two", "c1", &["a.gguf", "b.gguf"], "c1");
        let err = resolve_model_in("q/two", cache, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.gguf, b.gguf"), "{err}");
    }

    #[test]
    fn missing_id_error_says_where_and_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        let err = resolve_model_in("HuggingFaceTB/SmolLM2-135M", d.path(), true).unwrap_err();
        assert!(matches!(err, ModelError::Resolve { .. }));
        let msg = err.to_string();
        assert!(msg.contains("HuggingFaceTB/SmolLM2-135M"), "{msg}");
        assert!(msg.contains(&d.path().display().to_string()), "{msg}");
        assert!(msg.contains("models--HuggingFaceTB--SmolLM2-135M"), "{msg}");
        assert!(msg.contains("HF_HUB_OFFLINE"), "{msg}");
        assert!(
            msg.contains("huggingface-cli download HuggingFaceTB/SmolLM2-135M"),
            "{msg}"
        );
        let msg = resolve_model_in("a/b", d.path(), false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("does not download"), "{msg}");
        let msg = resolve_model_in("not an id", d.path(), false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not a Hugging Face model id"), "{msg}");
    }
}
