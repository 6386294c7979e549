//! Errors of the sandbox itself: a run could not be set up or started. A program that fails,
//! crashes or runs out of time is not an error but a [`super::SandboxOutcome`].

use std::io;

/// Setting up or starting a sandboxed run failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The request has no program to run.
    #[error("sandbox: empty argv")]
    EmptyArgv,
    /// `argv[0]` was not found (or is not executable) on the sandbox `PATH` nor on the parent's.
    #[error("sandbox: program `{program}` not found on the sandbox PATH `{path}`")]
    ProgramNotFound {
        /// `argv[0]`.
        program: String,
        /// The sandbox `PATH` it was looked up on.
        path: String,
    },
    /// A file to place in the work directory has a name that is not one plain path component.
    #[error(
        "sandbox: invalid file name {name:?} (must be one path component, not `.`/`..`, no NUL)"
    )]
    BadFileName {
        /// The name as given.
        name: String,
    },
    /// An argument or environment entry contains a NUL byte (cannot be passed to `exec`).
    #[error("sandbox: {what} contains a NUL byte")]
    Nul {
        /// Which argument or variable.
        what: String,
    },
    /// Network isolation was required by the configuration but the kernel does not allow it.
    #[error("sandbox: network isolation is required but unavailable on this system")]
    IsolationUnavailable,
    /// A host-side I/O step failed (creating the work directory, writing a file, a lock file).
    #[error("sandbox: {what}: {source}")]
    Io {
        /// The step that failed.
        what: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// Starting the program failed (exec error, or a sandbox mechanism failed in the child).
    #[error("sandbox: starting `{program}` failed: {source}")]
    Spawn {
        /// `argv[0]`.
        program: String,
        /// The exec error, or the failed mechanism's error as the child reported it.
        #[source]
        source: io::Error,
    },
}

impl SandboxError {
    /// An [`SandboxError::Io`] with a description of the step that failed.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
