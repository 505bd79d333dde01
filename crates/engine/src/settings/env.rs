//! The `CACHE_PURGE__...` environment variables as a [`config::Source`].
//!
//! config's own `Environment` source lower-cases every key and records "the environment" as
//! the origin of every value. This one keeps what an error must say and where an override
//! must land:
//!
//! - each value's origin is the exact variable, `environment variable
//!   CACHE_PURGE__BACKENDS__EDGE__SERVERS`;
//! - each segment of the key takes the spelling already used in the settings merged so far
//!   (the file) when one matches case-insensitively, so `CACHE_PURGE__BACKENDS__EDGE__SERVERS`
//!   overrides `[backends.Edge]` instead of creating a lower-cased twin `edge`;
//! - values are parsed as config's `try_parsing` does: a boolean, an integer, a float, else a
//!   string.

use config::{ConfigError, Map, Source, Value, ValueKind};

use super::ENV_PREFIX;

/// Between the prefix and each level of the key.
const SEPARATOR: &str = "__";

/// Warns about variables that look like overrides but are not read: `CACHE_PURGE_DELIVERY`
/// (one underscore after the prefix) sets nothing, and without a word the app would run with
/// the file's value.
pub(crate) fn warn_near_misses(vars: Option<&[(String, String)]>) {
    let names: Vec<String> = match vars {
        Some(vars) => vars.iter().map(|(n, _)| n.clone()).collect(),
        None => std::env::vars_os()
            .filter_map(|(n, _)| n.into_string().ok())
            .collect(),
    };
    for name in names {
        if let Some(meant) = near_miss(&name) {
            tracing::warn!(
                target: "cache_purge_hooks",
                variable = %name,
                "environment variable {name} is not read: overrides are named {ENV_PREFIX}{SEPARATOR}<KEY>, with two underscores (did you mean {meant}?)"
            );
        }
    }
}

/// The override a variable was probably meant to be, if it is a near miss.
pub(crate) fn near_miss(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    let rest = upper.strip_prefix(ENV_PREFIX)?;
    if rest.starts_with(SEPARATOR) || upper == super::FILE_ENV {
        return None;
    }
    let key = rest.trim_start_matches('_');
    if key.is_empty() || rest.len() == key.len() {
        // `CACHE_PURGE` itself, or `CACHE_PURGEX`: not ours.
        return None;
    }
    Some(format!("{ENV_PREFIX}{SEPARATOR}{key}"))
}

/// Reads the overrides from the process environment, or from a given list of variables.
#[derive(Clone, Debug)]
pub(crate) struct EnvSource {
    /// `None`: the process environment.
    vars: Option<Vec<(String, String)>>,
}

impl EnvSource {
    /// Overrides from `vars`, or from the process environment when `None`.
    pub(crate) fn new(vars: Option<Vec<(String, String)>>) -> Self {
        Self { vars }
    }

    /// The variables, sorted by name so that two spellings of one key override in a fixed
    /// order.
    fn variables(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let mut vars = match &self.vars {
            Some(vars) => vars.clone(),
            None => {
                let mut vars = Vec::new();
                for (name, value) in std::env::vars_os() {
                    // A name that is not Unicode cannot be one of ours.
                    let Ok(name) = name.into_string() else {
                        continue;
                    };
                    if key_of(&name).is_none() {
                        continue;
                    }
                    let value = value.into_string().map_err(|_| {
                        ConfigError::Message(format!(
                            "environment variable {name} holds bytes that are not UTF-8"
                        ))
                    })?;
                    vars.push((name, value));
                }
                vars
            }
        };
        vars.sort();
        Ok(vars)
    }
}

/// The key segments of a variable of ours (`CACHE_PURGE__BACKENDS__EDGE__SERVERS`:
/// `BACKENDS`, `EDGE`, `SERVERS`), or `None` for any other variable. The prefix is matched
/// without regard to case, as config's `Environment` does.
fn key_of(name: &str) -> Option<Vec<&str>> {
    let prefix_len = ENV_PREFIX.len() + SEPARATOR.len();
    let prefix = name.get(..prefix_len)?;
    if !prefix.eq_ignore_ascii_case(&format!("{ENV_PREFIX}{SEPARATOR}")) {
        return None;
    }
    Some(name[prefix_len..].split(SEPARATOR).collect())
}

/// A variable's value as config's `try_parsing` reads it.
fn parse_value(value: &str) -> ValueKind {
    if let Ok(b) = value.to_lowercase().parse::<bool>() {
        ValueKind::Boolean(b)
    } else if let Ok(i) = value.parse::<i64>() {
        ValueKind::I64(i)
    } else if let Ok(f) = value.parse::<f64>() {
        ValueKind::Float(f)
    } else {
        ValueKind::String(value.to_owned())
    }
}

/// The key under which `segment` goes in `table`: the spelling `table` already has when one
/// matches without regard to case (the lower-cased one first), else the segment lower-cased.
fn spelling(table: &Map<String, Value>, segment: &str, var: &str) -> Result<String, ConfigError> {
    let lower = segment.to_lowercase();
    if table.contains_key(&lower) {
        return Ok(lower);
    }
    let mut matches: Vec<&String> = table.keys().filter(|k| k.to_lowercase() == lower).collect();
    matches.sort();
    match matches.as_slice() {
        [] => Ok(lower),
        [one] => Ok((*one).clone()),
        several => Err(ConfigError::Message(format!(
            "environment variable {var} matches several keys: `{}`; rename all but one",
            several
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("`, `")
        ))),
    }
}

/// Sets `leaf` at `path` below `node`, making tables on the way (replacing a value that is
/// not a table, as config's own paths do).
fn insert(
    node: &mut Value,
    path: &[&str],
    leaf: ValueKind,
    origin: &String,
    var: &str,
) -> Result<(), ConfigError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(());
    };
    if !matches!(node.kind, ValueKind::Table(_)) {
        *node = Value::new(Some(origin), ValueKind::Table(Map::new()));
    }
    let ValueKind::Table(table) = &mut node.kind else {
        return Ok(());
    };
    let key = spelling(table, first, var)?;
    if rest.is_empty() {
        table.insert(key, Value::new(Some(origin), leaf));
        return Ok(());
    }
    let child = table
        .entry(key)
        .or_insert_with(|| Value::new(Some(origin), ValueKind::Table(Map::new())));
    insert(child, rest, leaf, origin, var)
}

impl Source for EnvSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, ConfigError> {
        let mut root = Value::new(None, ValueKind::Table(Map::new()));
        self.collect_to(&mut root)?;
        root.into_table()
    }

    /// Merges the variables into what the earlier sources gave: overridden here rather than
    /// through `collect` so that each key's spelling can follow theirs, and so that a key is
    /// never parsed as one of config's path expressions (a backend name may hold `-`).
    fn collect_to(&self, cache: &mut Value) -> Result<(), ConfigError> {
        for (name, value) in self.variables()? {
            let Some(path) = key_of(&name) else {
                continue;
            };
            if path.iter().any(|s| s.is_empty()) {
                return Err(ConfigError::Message(format!(
                    "environment variable {name} names no settings key: `{SEPARATOR}` separates \
                     the levels of one, like {ENV_PREFIX}{SEPARATOR}BACKENDS{SEPARATOR}EDGE{SEPARATOR}SERVERS"
                )));
            }
            let origin = format!("environment variable {name}");
            insert(cache, &path, parse_value(&value), &origin, &name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(v: &Value) -> &Map<String, Value> {
        match &v.kind {
            ValueKind::Table(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn near_misses_are_named_with_the_override_meant() {
        assert_eq!(
            near_miss("CACHE_PURGE_DELIVERY").as_deref(),
            Some("CACHE_PURGE__DELIVERY")
        );
        assert_eq!(
            near_miss("cache_purge_backends__edge__servers").as_deref(),
            Some("CACHE_PURGE__BACKENDS__EDGE__SERVERS")
        );
        for fine in [
            "CACHE_PURGE__DELIVERY",
            "CACHE_PURGE_CONFIG",
            "CACHE_PURGE",
            "CACHE_PURGEX",
            "PATH",
        ] {
            assert_eq!(near_miss(fine), None, "{fine}");
        }
    }

    #[test]
    fn overrides_follow_the_spelling_already_there() {
        let mut edge = Map::new();
        edge.insert("kind".to_owned(), Value::from("varnish"));
        let mut backends = Map::new();
        backends.insert("Edge".to_owned(), Value::from(edge));
        let mut top = Map::new();
        top.insert("backends".to_owned(), Value::from(backends));
        let mut cache = Value::from(top);
        EnvSource::new(Some(vec![
            (
                "CACHE_PURGE__BACKENDS__EDGE__SERVERS".to_owned(),
                "a:1".to_owned(),
            ),
            ("cache_purge__queue_capacity".to_owned(), "5".to_owned()),
            ("CACHE_PURGE_CONFIG".to_owned(), "x.toml".to_owned()),
            ("OTHER".to_owned(), "1".to_owned()),
        ]))
        .collect_to(&mut cache)
        .unwrap();
        let top = table(&cache);
        assert_eq!(top.len(), 2, "{top:?}");
        assert_eq!(top["queue_capacity"].kind, ValueKind::I64(5));
        let backends = table(&top["backends"]);
        assert_eq!(backends.len(), 1, "no twin `edge`: {backends:?}");
        let servers = &table(&backends["Edge"])["servers"];
        assert_eq!(servers.kind, ValueKind::String("a:1".into()));
        assert_eq!(
            servers.origin(),
            Some("environment variable CACHE_PURGE__BACKENDS__EDGE__SERVERS")
        );
    }

    #[test]
    fn values_are_parsed_like_config_does() {
        assert_eq!(parse_value("TRUE"), ValueKind::Boolean(true));
        assert_eq!(parse_value("7"), ValueKind::I64(7));
        assert_eq!(parse_value("1.5"), ValueKind::Float(1.5));
        assert_eq!(parse_value("5s"), ValueKind::String("5s".into()));
    }

    #[test]
    fn an_empty_level_is_an_error() {
        let mut cache = Value::from(Map::<String, Value>::new());
        let err = EnvSource::new(Some(vec![(
            "CACHE_PURGE__BACKENDS____KIND".to_owned(),
            "log".to_owned(),
        )]))
        .collect_to(&mut cache)
        .unwrap_err();
        assert!(
            err.to_string().contains("CACHE_PURGE__BACKENDS____KIND"),
            "{err}"
        );
    }
}
