//! Routing by host: which backends a target goes to.
//!
//! Each backend may list the hosts it serves ([`BackendRoute::hosts`], the `hosts` key of a
//! `[backends.NAME]` table) and may be marked as receiving paths ([`BackendRoute::paths`],
//! `paths = true`). The [`Purger`](crate::Purger) sends each target only to the backends
//! whose route takes it:
//!
//! | target | goes to |
//! |---|---|
//! | absolute URL, or prefix with a host (`https://www.example.com/a`) | the backends whose `hosts` match its host, and those without `hosts` |
//! | path, or prefix without a host (`/a`) | the backends with `paths = true`; when none is marked, every backend |
//! | everything | where paths go |
//! | tag | every backend (a cache holds only the tagged pages it served) |
//!
//! A target no backend takes (an absolute URL of a host no backend serves) is logged at WARN
//! and counted ([`Purger::unrouted`](crate::Purger::unrouted)), never dropped silently.
//! With no `hosts` and no `paths` anywhere, every target goes to every backend, as before
//! routing existed.
//!
//! ```
//! use cache_purge_hooks_engine::routing::{BackendRoute, HostPattern};
//!
//! let route = BackendRoute::default().hosts(["www.example.com", "*.example.org"]).unwrap();
//! assert!(route.serves_host("www.example.com"));
//! assert!(route.serves_host("shop.example.org:8443"));
//! assert!(!route.serves_host("example.org"));
//! assert!("https://x.example.org/".parse::<HostPattern>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use crate::settings::types::{InvalidValue, string_serde};
use crate::target::Target;

/// A host a backend serves: exactly `www.example.com` (any port unless one is given,
/// `www.example.com:8080`), or `*.example.org`, every subdomain of `example.org` (not
/// `example.org` itself: list it too). Compared without case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPattern {
    /// As written, lower-cased.
    text: String,
}

impl HostPattern {
    /// The pattern as written (lower-cased).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern is `*.domain`.
    pub fn is_wildcard(&self) -> bool {
        self.text.starts_with("*.")
    }

    /// Whether a URL's host (as [`PurgeUrl::host`](crate::PurgeUrl::host) gives it, with its
    /// port if any) matches.
    pub fn matches(&self, host: &str) -> bool {
        // The pattern is lower-case; the host is compared without case and without a copy
        // (this runs for every absolute URL and routed backend).
        let host = if has_port(&self.text) {
            host
        } else {
            strip_port(host)
        };
        match self.text.strip_prefix('*') {
            // `.example.org`: a non-empty label before it.
            Some(suffix) => {
                host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
            }
            None => host.eq_ignore_ascii_case(&self.text),
        }
    }
}

/// Whether a host (or pattern) ends in `:port` (`[::1]:80` included, `[::1]` not).
fn has_port(s: &str) -> bool {
    match s.rfind(':') {
        Some(i) => !s[i..].contains(']') && (!s.starts_with('[') || s[..i].ends_with(']')),
        None => false,
    }
}

fn strip_port(host: &str) -> &str {
    if has_port(host) {
        host.rfind(':').map_or(host, |i| &host[..i])
    } else {
        host
    }
}

impl FromStr for HostPattern {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            Err(InvalidValue::new(format!(
                "`{s}` is not a host pattern: {why}"
            )))
        };
        if s.is_empty() {
            return bad("it is empty");
        }
        if s.contains("://") || s.contains('/') {
            return bad("write the host only, without scheme or path (`www.example.com`)");
        }
        let name = s.strip_prefix("*.").unwrap_or(s);
        if name.contains('*') {
            return bad(
                "`*` may only stand for the subdomains at the start (`*.example.org`); leave \
                 `hosts` out to serve every host",
            );
        }
        if name.is_empty()
            || name.starts_with('.')
            || name.ends_with('.')
            || name.contains("..")
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
        {
            return bad("expected a host name (letters, digits, `-`, `.`, an optional `:port`)");
        }
        Ok(Self {
            text: s.to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

string_serde!(HostPattern);

/// Which targets one backend takes (see the [module documentation](self)). The default takes
/// every host and, when no backend is marked with [`paths`](Self::paths), every path.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BackendRoute {
    /// The hosts whose absolute URLs (and prefixes) this backend takes (`hosts`); empty:
    /// every host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostPattern>,
    /// Whether paths (and host-less prefixes, and purges of everything) go to this backend
    /// (`paths`). When no backend of the purger is marked, they go to all.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paths: bool,
}

impl BackendRoute {
    /// This route, taking only these hosts' absolute URLs; an error names the bad pattern.
    pub fn hosts<I, S>(mut self, hosts: I) -> Result<Self, InvalidValue>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.hosts = hosts
            .into_iter()
            .map(|h| h.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// This route, taking only these hosts' absolute URLs (every host when empty).
    pub fn with_hosts(mut self, hosts: Vec<HostPattern>) -> Self {
        self.hosts = hosts;
        self
    }

    /// This route, marked (or not) as receiving paths.
    pub fn paths(mut self, paths: bool) -> Self {
        self.paths = paths;
        self
    }

    /// Whether an absolute URL of this host goes to the backend.
    pub fn serves_host(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|p| p.matches(host))
    }

    /// Whether the route is the default one (every host, not marked for paths).
    pub fn is_default(&self) -> bool {
        self.hosts.is_empty() && !self.paths
    }
}

/// The routes of all backends of one purger, in the order of its backends.
#[derive(Clone, Debug, Default)]
pub(crate) struct Router {
    routes: Vec<BackendRoute>,
    /// Whether some backend is marked with `paths`.
    paths_marked: bool,
    /// Whether every route is the default: every target goes everywhere.
    open: bool,
}

impl Router {
    pub(crate) fn new(routes: Vec<BackendRoute>) -> Self {
        let paths_marked = routes.iter().any(|r| r.paths);
        let open = routes.iter().all(BackendRoute::is_default);
        Self {
            routes,
            paths_marked,
            open,
        }
    }

    /// Whether every target goes to every backend.
    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// Whether the backend at `index` takes this target.
    pub(crate) fn serves(&self, index: usize, target: &Target) -> bool {
        if self.open {
            return true;
        }
        let Some(route) = self.routes.get(index) else {
            return true;
        };
        let host = match target {
            Target::Url(u) | Target::Prefix(u) => u.host(),
            Target::Tag(_) => return true,
            _ => None,
        };
        match host {
            Some(host) => route.serves_host(host),
            None => !self.paths_marked || route.paths,
        }
    }

    /// Whether some backend takes this target.
    pub(crate) fn routed(&self, target: &Target) -> bool {
        self.open || (0..self.routes.len()).any(|i| self.serves(i, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> Target {
        Target::url(u).unwrap()
    }

    #[test]
    fn patterns_match_their_hosts_only() {
        let exact: HostPattern = "WWW.example.com".parse().unwrap();
        assert!(exact.matches("www.example.com"));
        assert!(exact.matches("www.example.com:8080"));
        assert!(!exact.matches("example.com"));
        assert!(!exact.matches("wwwexample.com"));
        let port: HostPattern = "www.example.com:8080".parse().unwrap();
        assert!(port.matches("www.example.com:8080"));
        assert!(!port.matches("www.example.com"));
        let wild: HostPattern = "*.example.org".parse().unwrap();
        assert!(wild.matches("a.b.example.org"));
        assert!(!wild.matches("example.org"));
        assert!(!wild.matches("badexample.org"));
        let v6: HostPattern = "[::1]".parse().unwrap();
        assert!(v6.matches("[::1]:8080"));
        for bad in [
            "",
            "*",
            "www.*.com",
            "*example.org",
            "https://a.com",
            "a.com/x",
            "a b",
            ".a",
        ] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_go_to_the_marked_backends_and_hosts_to_theirs() {
        let router = Router::new(vec![
            BackendRoute::default()
                .hosts(["a.example"])
                .unwrap()
                .paths(true),
            BackendRoute::default().hosts(["b.example"]).unwrap(),
            BackendRoute::default(),
        ]);
        let to = |t: &Target| (0..3).filter(|i| router.serves(*i, t)).collect::<Vec<_>>();
        assert_eq!(to(&url("https://a.example/x")), [0, 2]);
        assert_eq!(to(&url("https://b.example/x")), [1, 2]);
        assert_eq!(to(&url("/x")), [0]);
        assert_eq!(to(&Target::Everything), [0]);
        assert_eq!(to(&Target::tag("t").unwrap()), [0, 1, 2]);
        assert_eq!(to(&Target::prefix("https://b.example/p/").unwrap()), [1, 2]);
    }

    #[test]
    fn without_a_marked_backend_paths_go_everywhere_and_unknown_hosts_nowhere() {
        let router = Router::new(vec![
            BackendRoute::default().hosts(["a.example"]).unwrap(),
            BackendRoute::default().hosts(["b.example"]).unwrap(),
        ]);
        assert!(router.serves(0, &url("/x")) && router.serves(1, &url("/x")));
        assert!(!router.routed(&url("https://c.example/x")));
        assert!(router.routed(&url("https://b.example/x")));
    }
}
