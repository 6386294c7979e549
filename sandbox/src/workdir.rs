//! The host side of a run's work directory: a fresh temporary directory holding the request's
//! files, owned by the sandbox uid when there is one, and removed afterwards even if the
//! program made parts of it unreadable.

use super::{SandboxError, SandboxFile};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A staged work directory; removed on [`Workdir::remove`] (or, failing that, on drop).
#[derive(Debug)]
pub(super) struct Workdir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

/// Whether `name` is a plain, single path component.
pub(super) fn valid_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

impl Workdir {
    /// Creates the directory under `parent` and writes `files` into it. With `owner`, the
    /// directory and files are given to that uid/gid (the program runs as it).
    pub(super) fn create(
        parent: &Path,
        files: &[SandboxFile],
        owner: Option<(u32, u32)>,
    ) -> Result<Self, SandboxError> {
        let dir = tempfile::Builder::new()
            .prefix("oxrl-sandbox-")
            .tempdir_in(parent)
            .map_err(|e| {
                SandboxError::io(format!("creating a work dir in {}", parent.display()), e)
            })?;
        let path = dir.path().to_path_buf();
        for f in files {
            if !valid_file_name(&f.name) {
                return Err(SandboxError::BadFileName {
                    name: f.name.clone(),
                });
            }
            let p = path.join(&f.name);
            fs::write(&p, &f.contents)
                .map_err(|e| SandboxError::io(format!("writing {}", p.display()), e))?;
            let mode = if f.executable { 0o755 } else { 0o644 };
            fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                .map_err(|e| SandboxError::io(format!("chmod {}", p.display()), e))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                    .map_err(|e| SandboxError::io(format!("chown {}", p.display()), e))?;
            }
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .map_err(|e| SandboxError::io(format!("chown {}", path.display()), e))?;
        }
        Ok(Self {
            dir: Some(dir),
            path,
        })
    }

    /// The directory.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory. If the program removed permissions from parts of it (only
    /// possible without a mount namespace), they are restored first.
    pub(super) fn remove(mut self) {
        let Some(dir) = self.dir.take() else { return };
        if dir.close().is_ok() || !self.path.exists() {
            return;
        }
        restore_permissions(&self.path);
        if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "sandbox: could not remove work dir");
        }
    }
}

/// Makes every directory under `root` (not following symlinks) accessible to its owner again.
fn restore_permissions(root: &Path) {
    let Ok(meta) = fs::symlink_metadata(root) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(root, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(root) {
        for e in entries.flatten() {
            restore_permissions(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_staged_and_removed_even_when_made_unreadable() {
        let parent = tempfile::tempdir().unwrap();
        let files = [SandboxFile::new("main.py", "print(1)")];
        let w = Workdir::create(parent.path(), &files, None).unwrap();
        let p = w.path().to_path_buf();
        assert_eq!(fs::read_to_string(p.join("main.py")).unwrap(), "print(1)");
        fs::create_dir(p.join("locked")).unwrap();
        fs::write(p.join("locked/x"), "x").unwrap();
        fs::set_permissions(p.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
        w.remove();
        assert!(!p.exists());
    }

    #[test]
    fn bad_names_are_rejected() {
        for bad in ["", ".", "..", "a/b", "../x", "a\0b"] {
            assert!(!valid_file_name(bad), "{bad:?}");
        }
        assert!(valid_file_name("main.py"));
        let parent = tempfile::tempdir().unwrap();
        let err =
            Workdir::create(parent.path(), &[SandboxFile::new("../x", "")], None).unwrap_err();
        assert!(matches!(err, SandboxError::BadFileName { .. }));
    }
}
