//! Where rows come from: a local file, a local HF dataset snapshot folder, or an
//! `hf://datasets/owner/name[/split][@revision]` id resolved through the hf-hub cache. Nothing is
//! ever downloaded here: oxrl reads the cache only (as if `HF_HUB_OFFLINE=1` were always set), and
//! a missing dataset is an error saying where it looked.
//!
//! A split is picked inside a folder by name: a file whose stem is the split (`train.jsonl`),
//! starts with it (`train-00000-of-00002.parquet`, `train_part1.csv`), or lies under a folder of
//! that name (`default/train/0000.parquet`). Shards of one split are read in name order. When
//! the matches lie in several folders (dataset *subsets*, e.g. gsm8k's `main/` and `socratic/`),
//! `subset` must name one.

use crate::error::{DatasetError, Result};
use crate::formats::Format;
use std::path::{Path, PathBuf};

/// One file to read, with its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
}

/// A parsed `hf://datasets/...` id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfId {
    /// `owner/name`.
    pub repo: String,
    /// The split named in the id, if any.
    pub split: Option<String>,
    /// The revision (branch / tag / commit), `main` by default.
    pub revision: String,
}

impl HfId {
    /// Parses `hf://datasets/owner/name[/split][@revision]`; `None` when `s` is not an `hf://` id.
    pub fn parse(s: &str) -> Option<Result<HfId>> {
        let rest = s.strip_prefix("hf://")?;
        let bad = || {
            DatasetError::Config(format!(
                "`{s}`: expected hf://datasets/owner/name[/split][@revision]"
            ))
        };
        let Some(rest) = rest.strip_prefix("datasets/") else {
            return Some(Err(bad()));
        };
        let (path, revision) = match rest.split_once('@') {
            Some((p, r)) if !r.is_empty() => (p, r.to_owned()),
            Some(_) => return Some(Err(bad())),
            None => (rest, "main".to_owned()),
        };
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        Some(match parts.as_slice() {
            [owner, name] => Ok(HfId {
                repo: format!("{owner}/{name}"),
                split: None,
                revision,
            }),
            [owner, name, split] => Ok(HfId {
                repo: format!("{owner}/{name}"),
                split: Some((*split).to_owned()),
                revision,
            }),
            _ => Err(bad()),
        })
    }
}

/// The hf-hub cache folder: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub` (the same order as the Python library).
pub fn hf_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

/// The snapshot folder of a dataset in the hf-hub cache at `cache_dir`.
pub fn hf_snapshot_dir(cache_dir: &Path, id: &HfId) -> Result<PathBuf> {
    let repo = hf_hub::Repo::with_revision(
        id.repo.clone(),
        hf_hub::RepoType::Dataset,
        id.revision.clone(),
    );
    let repo_dir = cache_dir.join(repo.folder_name());
    let ref_path = repo_dir.join("refs").join(&id.revision);
    // A revision may be a commit hash with no ref file.
    let commit = match std::fs::read_to_string(&ref_path) {
        Ok(c) => c.trim().to_owned(),
        Err(_) => id.revision.clone(),
    };
    let snapshot = repo_dir.join("snapshots").join(&commit);
    if snapshot.is_dir() {
        Ok(snapshot)
    } else {
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
        Err(DatasetError::NotFound {
            what: format!(
                "dataset `{}` (revision `{}`) in the local hf-hub cache{}; oxrl reads the cache \
                 only: fetch it first, e.g. `huggingface-cli download --repo-type dataset {}`, \
                 or set HF_HUB_CACHE / HF_HOME",
                id.repo,
                id.revision,
                if offline {
                    " (HF_HUB_OFFLINE is set)"
                } else {
                    ""
                },
                id.repo
            ),
            looked: vec![ref_path, snapshot],
        })
    }
}

/// Every data file (known extension) under `dir`, recursively (depth ≤ 4), sorted, with paths
/// relative to `dir`.
fn data_files(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, rel: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| DatasetError::io(dir, e))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let rel = rel.join(&name);
            if path.is_dir() {
                if depth < 4 {
                    walk(&path, &rel, depth + 1, out)?;
                }
            } else if Format::from_path(&path).is_some() {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), 0, &mut out)?;
    out.sort();
    Ok(out)
}

fn matches_split(rel: &Path, split: &str) -> bool {
    let stem = rel
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.split('.').next().unwrap_or(n))
        .unwrap_or("");
    let stem_match = stem == split
        || stem
            .strip_prefix(split)
            .is_some_and(|r| r.starts_with('-') || r.starts_with('_'));
    let dir_match = rel
        .parent()
        .is_some_and(|p| p.components().any(|c| c.as_os_str() == split));
    stem_match || dir_match
}

/// The files of `split` (default `train`) in a snapshot folder, optionally inside `subset`.
pub fn resolve_dir(
    dir: &Path,
    split: Option<&str>,
    subset: Option<&str>,
) -> Result<Vec<SourceFile>> {
    let split = split.unwrap_or("train");
    let all = data_files(dir)?;
    let in_subset = |rel: &&PathBuf| {
        subset.is_none_or(|s| {
            rel.parent()
                .is_some_and(|p| p.components().any(|c| c.as_os_str() == s))
        })
    };
    let mut matched: Vec<&PathBuf> = all
        .iter()
        .filter(in_subset)
        .filter(|r| matches_split(r, split))
        .collect();
    if matched.is_empty() {
        // A folder holding exactly one data file and nothing else is that file.
        let candidates: Vec<&PathBuf> = all.iter().filter(in_subset).collect();
        if candidates.len() == 1 && split == "train" {
            matched = candidates;
        } else {
            return Err(DatasetError::NotFound {
                what: format!(
                    "split `{split}`{} (data files there: {})",
                    subset
                        .map(|s| format!(" of subset `{s}`"))
                        .unwrap_or_default(),
                    if all.is_empty() {
                        "none".to_owned()
                    } else {
                        all.iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                looked: vec![dir.to_path_buf()],
            });
        }
    }
    // Matches in several sibling folders are several subsets, unless the split is the folder.
    let groups: std::collections::BTreeSet<PathBuf> = matched
        .iter()
        .map(|r| {
            let parent = r.parent().map(Path::to_path_buf).unwrap_or_default();
            // `sub/train/0000.parquet`: the group is `sub`.
            if parent.file_name().is_some_and(|n| n == split) {
                parent.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                parent
            }
        })
        .collect();
    // `data/` is the conventional folder of the only subset, not a subset name.
    if groups.len() > 1 {
        return Err(DatasetError::Config(format!(
            "split `{split}` is in several subsets of {} ({}); set `subset` to one of them",
            dir.display(),
            groups
                .iter()
                .map(|g| g.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut files = Vec::new();
    for rel in matched {
        let path = dir.join(rel);
        let format = Format::from_path(&path)
            .ok_or_else(|| DatasetError::Config(format!("unknown format of {}", path.display())))?;
        files.push(SourceFile { path, format });
    }
    // Shards of one split in different formats would be read twice over.
    if files.iter().any(|f| f.format != files[0].format) {
        return Err(DatasetError::Config(format!(
            "split `{split}` of {} has files in several formats; name one file as `source`",
            dir.display()
        )));
    }
    Ok(files)
}

/// Resolves a `source` string (a file, a folder, or an `hf://` id) to the files to read.
/// `format` overrides the format guessed from a single file's extension.
pub fn resolve(
    source: &str,
    base_dir: &Path,
    split: Option<&str>,
    subset: Option<&str>,
    format: Option<Format>,
) -> Result<Vec<SourceFile>> {
    if let Some(id) = HfId::parse(source) {
        let id = id?;
        let dir = hf_snapshot_dir(&hf_cache_dir(), &id)?;
        return resolve_dir(&dir, id.split.as_deref().or(split), subset);
    }
    let path = if Path::new(source).is_absolute() {
        PathBuf::from(source)
    } else {
        base_dir.join(source)
    };
    if path.is_dir() {
        let mut files = resolve_dir(&path, split, subset)?;
        if let Some(f) = format {
            files.iter_mut().for_each(|s| s.format = f);
        }
        Ok(files)
    } else if path.is_file() {
        let format = format.or_else(|| Format::from_path(&path)).ok_or_else(|| {
            DatasetError::Config(format!(
                "cannot tell the format of {} from its extension; set `format` (jsonl, json, csv, parquet)",
                path.display()
            ))
        })?;
        Ok(vec![SourceFile { path, format }])
    } else {
        Err(DatasetError::NotFound {
            what: format!("dataset source `{source}`"),
            looked: vec![path],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, rel: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }

    fn rels(dir: &Path, files: &[SourceFile]) -> Vec<String> {
        files
            .iter()
            .map(|f| f.path.strip_prefix(dir).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn parses_hf_ids() {
        assert!(HfId::parse("data.jsonl").is_none());
        let id = HfId::parse("hf://datasets/openai/gsm8k/test@v1")
            .unwrap()
            .unwrap();
        assert_eq!(
            id,
            HfId {
                repo: "openai/gsm8k".into(),
                split: Some("test".into()),
                revision: "v1".into()
            }
        );
        let id = HfId::parse("hf://datasets/a/b").unwrap().unwrap();
        assert_eq!((id.split, id.revision.as_str()), (None, "main"));
        assert!(HfId::parse("hf://models/a/b").unwrap().is_err());
        assert!(HfId::parse("hf://datasets/a").unwrap().is_err());
    }

    #[test]
    fn picks_split_shards_in_order() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "data/train-00001-of-00002.parquet");
        touch(d.path(), "data/train-00000-of-00002.parquet");
        touch(d.path(), "data/test-00000-of-00001.parquet");
        touch(d.path(), "README.md");
        let f = resolve_dir(d.path(), Some("train"), None).unwrap();
        assert_eq!(
            rels(d.path(), &f),
            [
                "data/train-00000-of-00002.parquet",
                "data/train-00001-of-00002.parquet"
            ]
        );
        assert!(f.iter().all(|f| f.format == Format::Parquet));
        let f = resolve_dir(d.path(), Some("test"), None).unwrap();
        assert_eq!(rels(d.path(), &f), ["data/test-00000-of-00001.parquet"]);
        let err = resolve_dir(d.path(), Some("validation"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("split `validation`") && err.contains("data/test-00000"),
            "{err}"
        );
    }

    #[test]
    fn split_files_and_subsets() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "train.jsonl");
        touch(d.path(), "test.jsonl");
        let f = resolve_dir(d.path(), Some("test"), None).unwrap();
        assert_eq!(rels(d.path(), &f), ["test.jsonl"]);

        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "main/train-00000-of-00001.parquet");
        touch(d.path(), "socratic/train-00000-of-00001.parquet");
        let err = resolve_dir(d.path(), Some("train"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("main, socratic"), "{err}");
        let f = resolve_dir(d.path(), Some("train"), Some("socratic")).unwrap();
        assert_eq!(
            rels(d.path(), &f),
            ["socratic/train-00000-of-00001.parquet"]
        );

        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "default/train/0000.parquet");
        touch(d.path(), "default/train/0001.parquet");
        let f = resolve_dir(d.path(), Some("train"), None).unwrap();
        assert_eq!(rels(d.path(), &f).len(), 2);
    }

    #[test]
    fn hf_cache_lookup_and_clear_error() {
        let cache = tempfile::tempdir().unwrap();
        let id = HfId::parse("hf://datasets/me/tiny/test").unwrap().unwrap();
        let err = hf_snapshot_dir(cache.path(), &id).unwrap_err().to_string();
        assert!(
            err.contains("me/tiny") && err.contains("datasets--me--tiny"),
            "{err}"
        );
        let repo = cache.path().join("datasets--me--tiny");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
        touch(&repo, "snapshots/abc123/data/test-00000-of-00001.jsonl");
        let dir = hf_snapshot_dir(cache.path(), &id).unwrap();
        assert_eq!(dir, repo.join("snapshots/abc123"));
        let f = resolve_dir(&dir, id.split.as_deref(), None).unwrap();
        assert_eq!(f[0].format, Format::Jsonl);
    }

    #[test]
    fn missing_file_says_where() {
        let d = tempfile::tempdir().unwrap();
        let err = resolve("nope.jsonl", d.path(), None, None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&d.path().join("nope.jsonl").display().to_string()),
            "{err}"
        );
    }
}
