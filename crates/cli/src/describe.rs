//! What a configured backend is, in words: kind, mode, where it purges, and what it cannot
//! purge and why.

use cache_purge_hooks_engine::TargetKind;
use cache_purge_hooks_engine::backend::Capabilities;
use cache_purge_hooks_engine::settings::{BackendSettings, NginxMode, ServerAddr, VarnishMode};

/// A backend of the settings, described.
#[derive(Debug, Clone)]
pub(crate) struct BackendInfo {
    /// Its name (`[backends.NAME]`).
    pub(crate) name: String,
    /// `log`, `dummy`, `memory`, `varnish`, `nginx`, `cloudflare`, `fastly`, `cloudfront`, `akamai`, `nats`.
    pub(crate) kind: &'static str,
    /// `cli`, `varnishadm`, `http`, `files`, `wipe`; `None` for kinds without modes.
    pub(crate) mode: Option<&'static str>,
    /// Where it purges: servers, the cache directory, or a CDN's zone or service.
    pub(crate) servers: Vec<String>,
}

impl BackendInfo {
    /// `varnish cli on 127.0.0.1:6082`, `nginx files in /var/cache/nginx`, `log`.
    pub(crate) fn label(&self) -> String {
        let mut label = self.kind.to_owned();
        if let Some(mode) = self.mode {
            label.push(' ');
            label.push_str(mode);
        }
        if !self.servers.is_empty() {
            let at = if matches!(self.mode, Some("files" | "wipe")) {
                " in "
            } else {
                " on "
            };
            label.push_str(at);
            label.push_str(&self.servers.join(", "));
        }
        label
    }
}

/// Describes one backend of the settings.
pub(crate) fn info(name: &str, settings: &BackendSettings) -> BackendInfo {
    let (mode, servers) = match settings {
        BackendSettings::Varnish(v) => (Some(varnish_mode(v.mode)), shown(v.servers_or_default())),
        BackendSettings::Nginx(n) => match n.mode {
            NginxMode::Http => (Some("http"), shown(n.servers_or_default())),
            other => (
                Some(nginx_mode(other)),
                n.cache_dir.iter().map(ToString::to_string).collect(),
            ),
        },
        BackendSettings::Cloudflare(c) => (
            None,
            c.zone_id
                .iter()
                .map(|z| format!("zone {z} ({} plan)", c.plan))
                .collect(),
        ),
        BackendSettings::Fastly(f) => (
            None,
            f.service_id
                .iter()
                .map(|s| format!("service {s}{}", if f.soft { " (soft)" } else { "" }))
                .collect(),
        ),
        BackendSettings::CloudFront(c) => (
            None,
            c.distribution_id
                .iter()
                .map(|d| {
                    format!(
                        "distribution {d}{}",
                        if c.wait {
                            " (waits for completion)"
                        } else {
                            ""
                        }
                    )
                })
                .collect(),
        ),
        BackendSettings::Akamai(a) => (
            Some(a.action.as_str()),
            vec![match &a.base_url {
                Some(url) => format!("{url} ({})", a.network),
                None => format!(
                    "the host of {} ({})",
                    a.edgerc
                        .as_ref()
                        .map_or_else(String::new, |p| p.display().to_string()),
                    a.network
                ),
            }],
        ),
        BackendSettings::Nats(n) => (Some("jetstream"), shown(n.servers_or_default())),
        _ => (None, Vec::new()),
    };
    BackendInfo {
        name: name.to_owned(),
        kind: settings.kind(),
        mode,
        servers,
    }
}

/// One line of the routing table (`cache-purge check`): which targets a backend takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteRow {
    /// The backend's name.
    pub(crate) name: String,
    /// The host patterns whose absolute URLs it takes; empty: every host.
    pub(crate) hosts: Vec<String>,
    /// Whether paths (host-less prefixes, everything) go to it.
    pub(crate) paths: bool,
}

impl RouteRow {
    /// `URLs of www.example.com, *.example.org; paths; tags`.
    pub(crate) fn label(&self) -> String {
        let hosts = if self.hosts.is_empty() {
            "URLs of every host".to_owned()
        } else {
            format!("URLs of {}", self.hosts.join(", "))
        };
        let paths = if self.paths {
            "; paths, prefixes without a host, everything"
        } else {
            ""
        };
        format!("{hosts}{paths}; tags")
    }
}

/// The routing table of the settings (see `cache_purge_hooks_engine::routing`): one row per
/// backend, with `paths` as the purger applies it (every backend when none is marked); `None`
/// when nothing is routed (every target goes to every backend).
pub(crate) fn routing(settings: &cache_purge_hooks_engine::Settings) -> Option<Vec<RouteRow>> {
    if settings
        .backends
        .values()
        .all(|b| b.common.route.is_default())
    {
        return None;
    }
    let marked = settings.backends.values().any(|b| b.common.route.paths);
    Some(
        settings
            .backends
            .iter()
            .map(|(name, b)| RouteRow {
                name: name.clone(),
                hosts: b
                    .common
                    .route
                    .hosts
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                paths: b.common.route.paths || !marked,
            })
            .collect(),
    )
}

/// Addresses as written in settings files.
fn shown(servers: Vec<ServerAddr>) -> Vec<String> {
    servers.iter().map(ToString::to_string).collect()
}

pub(crate) fn varnish_mode(mode: VarnishMode) -> &'static str {
    match mode {
        VarnishMode::Varnishadm => "varnishadm",
        VarnishMode::Http => "http",
        _ => "cli",
    }
}

pub(crate) fn nginx_mode(mode: NginxMode) -> &'static str {
    match mode {
        NginxMode::Files => "files",
        NginxMode::Wipe => "wipe",
        _ => "http",
    }
}

/// The name of a target kind in messages, plural.
pub(crate) fn kind_plural(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Url => "URLs",
        TargetKind::Prefix => "prefixes",
        TargetKind::Tag => "tags",
        _ => "everything",
    }
}

/// Why a backend cannot purge some kinds of target, and what can.
pub(crate) fn unsupported_reason(settings: &BackendSettings, caps: Capabilities) -> String {
    match settings {
        BackendSettings::Nginx(n) => {
            let mut reasons = Vec::new();
            if !caps.supports(TargetKind::Prefix) {
                reasons.push(match n.mode {
                    NginxMode::Files => {
                        "nginx mode \"files\" deletes the cache file of exact URLs (or the whole \
                         cache for --all); it cannot purge prefixes (mode = \"wipe\" empties the \
                         whole cache)"
                    }
                    _ => {
                        "nginx mode \"http\" (ngx_cache_purge) purges exact URLs only; for \
                         prefixes or everything use a Varnish backend, or nginx mode = \"wipe\" \
                         (which empties the whole cache)"
                    }
                });
            }
            if !caps.supports(TargetKind::Tag) {
                reasons.push(match n.mode {
                    NginxMode::Wipe => {
                        "nginx mode \"wipe\" cannot purge tags (tags = \"index\" needs mode = \
                         \"http\" or \"files\")"
                    }
                    _ => {
                        "tags = \"none\": nginx has no tags; set tags = \"index\" (with a \
                         [tag_index] table, kind = \"redis\") to purge tags through the tag→URL \
                         index"
                    }
                });
            }
            reasons.join("; ")
        }
        BackendSettings::CloudFront(_) if !caps.supports(TargetKind::Tag) => {
            "CloudFront has no tag invalidation: it invalidates paths (URLs, prefixes as `/prefix*`, \
             everything as `/*`)"
                .to_owned()
        }
        BackendSettings::Akamai(a) => {
            let mut reasons = vec![
                "Fast Purge has no prefix purge: tag the pages (Edge-Cache-Tag) and purge the tag",
            ];
            if a.cp_codes.is_empty() && !caps.supports(TargetKind::Everything) {
                reasons.push(
                    "everything needs cp_codes = [12345]: Akamai purges everything by CP code",
                );
            }
            reasons.join("; ")
        }
        BackendSettings::Fastly(_) if !caps.supports(TargetKind::Prefix) => {
            "Fastly has no prefix purge: tag the pages (Surrogate-Key) and purge the tag".to_owned()
        }
        BackendSettings::Varnish(v) => {
            let mut reasons = Vec::new();
            if !caps.supports(TargetKind::Prefix) {
                reasons.push(
                    "varnish mode \"http\" with http_method = \"purge\" purges exact URLs \
                     (and tags); http_method = \"ban\" or mode = \"cli\" also purge prefixes \
                     and everything",
                );
            }
            if !caps.supports(TargetKind::Tag) {
                reasons.push(if v.mode == VarnishMode::Http {
                    "tags = \"none\": set tags = \"ban\" (stock Varnish) or tags = \"xkey\" \
                     (varnish-modules) to purge tags"
                } else {
                    "tags = \"none\": set tags = \"ban\" to purge tags (tags = \"xkey\" \
                     needs mode = \"http\")"
                });
            }
            reasons.join("; ")
        }
        _ => {
            let can: Vec<&str> = [
                TargetKind::Url,
                TargetKind::Prefix,
                TargetKind::Tag,
                TargetKind::Everything,
            ]
            .into_iter()
            .filter(|k| caps.supports(*k))
            .map(kind_plural)
            .collect();
            format!("this backend purges only {}", can.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_purge_hooks_engine::Settings;

    #[test]
    fn labels_say_kind_mode_and_where() {
        let s = Settings::from_toml_str(
            "[backends.v]\nkind = \"varnish\"\nservers = [\"127.0.0.1:6082\"]\n\
             [backends.n]\nkind = \"nginx\"\nmode = \"wipe\"\ncache_dir = \"/var/cache/x\"\n\
             [backends.l]\nkind = \"log\"\n",
        )
        .unwrap();
        assert_eq!(
            info("v", &s.backends["v"].settings).label(),
            "varnish cli on 127.0.0.1:6082"
        );
        assert_eq!(
            info("n", &s.backends["n"].settings).label(),
            "nginx wipe in /var/cache/x"
        );
        assert_eq!(info("l", &s.backends["l"].settings).label(), "log");
        assert!(
            unsupported_reason(&s.backends["n"].settings, Capabilities::URL)
                .contains("cannot purge tags")
        );
        let s = Settings::from_toml_str("[backends.n]\nkind = \"nginx\"\n").unwrap();
        assert!(
            unsupported_reason(&s.backends["n"].settings, Capabilities::URL)
                .contains("tags = \"index\"")
        );
    }
}
