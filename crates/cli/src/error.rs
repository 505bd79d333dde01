//! Errors that stop a command, with the exit code they mean.

use cache_purge_hooks_engine::{BuildError, SettingsError};

use crate::exit;

/// A command could not do its job. Printed on stderr by `run` (and as JSON with `--json`).
#[derive(Debug)]
pub(crate) struct CliError {
    /// [`exit::FAILURE`] or [`exit::USAGE`].
    pub(crate) code: u8,
    /// One sentence: what is wrong.
    pub(crate) message: String,
    /// The settings key concerned, if any.
    pub(crate) key: Option<String>,
    /// More lines (each invalid input, for example).
    pub(crate) details: Vec<String>,
    /// What to do about it.
    pub(crate) hint: Option<String>,
}

impl CliError {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            key: None,
            details: Vec::new(),
            hint: None,
        }
    }

    /// Wrong usage or input: exit code 2.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }

    /// Something failed: exit code 1.
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self::new(exit::FAILURE, message)
    }

    /// Adds lines under the message.
    pub(crate) fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }

    /// Adds what to do about it.
    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<SettingsError> for CliError {
    /// Invalid settings: exit code 2, the message naming key, origin and expectation.
    fn from(e: SettingsError) -> Self {
        let key = e.key.clone();
        Self {
            key,
            ..Self::usage(e.to_string())
        }
    }
}

impl From<BuildError> for CliError {
    /// Settings that cannot be used (a secret file that cannot be read...): exit code 2.
    fn from(e: BuildError) -> Self {
        Self::usage(format!("cannot set up the backends: {e}"))
            .with_hint("`cache-purge check` diagnoses each backend")
    }
}
