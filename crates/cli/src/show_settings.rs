//! `cache-purge settings`: the effective settings (the file, then `CACHE_PURGE__*` overrides,
//! then the defaults for every key not given), as TOML, or as JSON with `--json`.

use serde_json::json;

use crate::args::GlobalArgs;
use crate::error::CliError;
use crate::exit;
use crate::output::{self, Output};
use crate::settings;

/// Runs `cache-purge settings`.
pub(crate) fn run(global: &GlobalArgs, out: &Output) -> Result<u8, CliError> {
    let loaded = settings::load(global)?;
    if out.json {
        out.json(&json!({
            "source": loaded.source.describe(),
            "env_overrides": loaded.env_overrides,
            "settings": loaded.settings,
        }));
        return Ok(exit::SUCCESS);
    }
    let text = toml::to_string(&loaded.settings)
        .map_err(|e| CliError::failed(format!("cannot write the settings as TOML: {e}")))?;
    out.line(format!("# from {}", loaded.source.describe()));
    if !loaded.env_overrides.is_empty() {
        out.line(format!(
            "# overridden by {}",
            loaded.env_overrides.join(", ")
        ));
    }
    out.line("# every key, defaults included (docs/settings.md)");
    out.line(text.trim_end());
    if loaded.source == settings::Source::Defaults {
        output::note("no settings file found: these are the defaults");
    }
    Ok(exit::SUCCESS)
}
