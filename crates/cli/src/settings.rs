//! Loading the settings the way the library does (file, then `CACHE_PURGE__*` variables),
//! remembering where they came from.

use std::path::PathBuf;

use cache_purge_hooks_engine::Settings;
use cache_purge_hooks_engine::settings::{
    DEFAULT_FILE, ENV_PREFIX, FILE_ENV, SettingsErrorKind, SettingsLoader,
};

use crate::args::GlobalArgs;
use crate::error::CliError;

/// Where the settings were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// This file (from `--config`, `CACHE_PURGE_CONFIG` or `./cache-purge.toml`).
    File(PathBuf),
    /// No file: the defaults (and the environment).
    Defaults,
}

impl Source {
    /// For messages: the file's path, or `the defaults`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Defaults => {
                format!("the defaults (no --config, no {FILE_ENV}, no ./{DEFAULT_FILE})")
            }
        }
    }
}

/// Settings and their origin.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) settings: Settings,
    pub(crate) source: Source,
    /// The names of the `CACHE_PURGE__*` variables set in the environment.
    pub(crate) env_overrides: Vec<String>,
}

/// Reads and checks the settings: `--config PATH` (which must exist), else what
/// [`SettingsLoader::new`] reads. Invalid settings are a usage error (exit code 2).
pub(crate) fn load(global: &GlobalArgs) -> Result<Loaded, CliError> {
    let (loader, source) = match &global.config {
        Some(path) => (
            SettingsLoader::new().file(path.clone()),
            Source::File(path.clone()),
        ),
        None => {
            let source = match std::env::var_os(FILE_ENV) {
                Some(p) if !p.is_empty() => Source::File(PathBuf::from(p)),
                _ if std::path::Path::new(DEFAULT_FILE).exists() => {
                    Source::File(PathBuf::from(DEFAULT_FILE))
                }
                _ => Source::Defaults,
            };
            (SettingsLoader::new(), source)
        }
    };
    let settings = loader.load().map_err(|e| {
        let hint = if e.kind == SettingsErrorKind::MissingFile {
            format!(
                "pass --config PATH, set {FILE_ENV}, or run where ./{DEFAULT_FILE} is; docs/settings.md lists every key"
            )
        } else {
            "docs/settings.md lists every key".to_owned()
        };
        CliError::from(e).with_hint(hint)
    })?;
    let prefix = format!("{ENV_PREFIX}__");
    let mut env_overrides: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.to_ascii_uppercase().starts_with(&prefix))
        .collect();
    env_overrides.sort();
    Ok(Loaded {
        settings,
        source,
        env_overrides,
    })
}
