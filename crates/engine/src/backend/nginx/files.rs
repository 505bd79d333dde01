//! `mode = "files"`: the cache key of a URL, the path of its cache file, and a careful unlink.
//!
//! nginx stores a cached response in `<cache_dir>/<levels>/<md5(key)>`, where the key is
//! `proxy_cache_key` rendered for the request, and the level directories are taken from the
//! *end* of the hex digest (`levels=1:2`: the last character, then the two before it). The
//! file starts with a binary header, then a `\nKEY: <key>\n` line, then the response. A file
//! is deleted only when that line holds exactly the key computed here, so a key template that
//! does not match nginx's, or a header this code does not understand, never deletes a file it
//! was not asked to delete.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use super::settings::{KeyPart, NginxSettings, Scheme};
use crate::backend::{Cause, PurgeError};
use crate::settings::types::FieldError;
use crate::target::PurgeUrl;

/// How far into a cache file the `KEY:` line is looked for, on top of the key's own length.
/// nginx's binary header is a few hundred bytes (336 on 64-bit Linux for nginx 1.22).
const HEADER_ALLOWANCE: usize = 8 * 1024;

/// What marks the start of the key line in a cache file.
const KEY_MARK: &[u8] = b"\nKEY: ";

/// Renders an nginx `proxy_cache_key` for a URL, the way nginx would for a request of it.
#[derive(Clone, Debug)]
pub(crate) struct KeyRenderer {
    parts: Vec<KeyPart>,
    proxy_host: Option<String>,
    host_header: Option<String>,
    scheme: Scheme,
}

/// Why a URL has no cache key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NoKey {
    /// nginx refuses this request (400): nothing can be cached under it. `$uri` with a `..`
    /// above the root, or an encoded NUL byte.
    Rejected(&'static str),
    /// The template needs a value the settings do not give (`$host` for a path, with no
    /// `host_header`).
    Missing(&'static str),
}

impl KeyRenderer {
    /// A renderer of the settings' key template, which must give a value to every variable it
    /// uses ([`NginxSettings::check`]'s rule, whose error this returns otherwise).
    pub(crate) fn new(settings: &NginxSettings) -> Result<Self, FieldError> {
        let template = settings.key_options()?;
        Ok(Self {
            parts: template.parts().to_vec(),
            proxy_host: settings.proxy_host.clone(),
            host_header: settings.host_header.as_ref().map(ToString::to_string),
            scheme: settings.scheme,
        })
    }

    /// The key nginx computes for a request of this URL (bytes: `$uri` is percent-decoded
    /// and need not be UTF-8).
    ///
    /// - `$scheme`: the URL's scheme, or the `scheme` setting for a path;
    /// - `$proxy_host`: the `proxy_host` setting;
    /// - `$http_host`: the URL's host (with port), or `host_header`;
    /// - `$host`: the same, lowercased, without port or trailing dot (what nginx makes of it);
    /// - `$request_uri`: path and query as sent (still percent-encoded);
    /// - `$uri`: the path as nginx normalises it (see [`nginx_uri`]);
    /// - `$is_args`: `?` when the query is not empty (nginx: `r->args.len > 0`);
    /// - `$args`, `$query_string`: the query without `?`, raw.
    pub(crate) fn render(&self, url: &PurgeUrl) -> Result<Vec<u8>, NoKey> {
        let mut key = Vec::with_capacity(url.as_str().len() + 32);
        let host = url.host().or(self.host_header.as_deref());
        let query = url.query().unwrap_or("");
        for part in &self.parts {
            match part {
                KeyPart::Literal(text) => key.extend_from_slice(text.as_bytes()),
                KeyPart::Variable(var) => match *var {
                    "scheme" => key
                        .extend_from_slice(url.scheme().unwrap_or(self.scheme.as_str()).as_bytes()),
                    "proxy_host" => key.extend_from_slice(
                        self.proxy_host
                            .as_deref()
                            .ok_or(NoKey::Missing("proxy_host"))?
                            .as_bytes(),
                    ),
                    "http_host" => {
                        key.extend_from_slice(host.ok_or(NoKey::Missing("host_header"))?.as_bytes())
                    }
                    "host" => key.extend_from_slice(
                        nginx_host(host.ok_or(NoKey::Missing("host_header"))?).as_bytes(),
                    ),
                    "request_uri" => key.extend_from_slice(url.path_and_query().as_bytes()),
                    "uri" => key.extend_from_slice(&nginx_uri(url.path())?),
                    "is_args" => {
                        if !query.is_empty() {
                            key.push(b'?');
                        }
                    }
                    "args" | "query_string" => key.extend_from_slice(query.as_bytes()),
                    // A KeyTemplate only holds the variables matched above.
                    _ => return Err(NoKey::Missing("a variable this backend does not know")),
                },
            }
        }
        Ok(key)
    }
}

/// nginx's `$host` from a `Host` value: lowercased, without the port and a trailing dot.
fn nginx_host(host: &str) -> String {
    let without_port = if host.starts_with('[') {
        // [v6]:port
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, _)) => h,
            None => host,
        }
    };
    without_port
        .strip_suffix('.')
        .unwrap_or(without_port)
        .to_ascii_lowercase()
}

/// nginx's `$uri` for a request path (with `merge_slashes on`, the default): `%XX` escapes
/// decoded (a decoded `/` or `.` counts as one, as in nginx), runs of `/` merged into one, `.`
/// segments dropped and `..` segments resolved; a path ending in `/`, `/.` or `/..` keeps a
/// trailing `/`. A `..` above the root or an encoded NUL makes nginx answer 400 and cache
/// nothing: [`NoKey::Rejected`].
pub(crate) fn nginx_uri(path: &str) -> Result<Vec<u8>, NoKey> {
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    if decoded.contains(&0) {
        return Err(NoKey::Rejected("an encoded NUL byte"));
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    // The path starts with `/` (PurgeUrl guarantees it), so the first piece is empty.
    for segment in decoded.split(|&b| b == b'/').skip(1) {
        trailing_slash = false;
        match segment {
            b"" | b"." => trailing_slash = true,
            b".." => {
                if segments.pop().is_none() {
                    return Err(NoKey::Rejected("a `..` above the root"));
                }
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut uri = Vec::with_capacity(decoded.len());
    for s in &segments {
        uri.push(b'/');
        uri.extend_from_slice(s);
    }
    if uri.is_empty() || trailing_slash {
        uri.push(b'/');
    }
    Ok(uri)
}

/// The cache file of a key: `dir/<levels>/<md5 hex>`, each level taking its characters from
/// the end of the digest (`levels=1:2`, md5 `…abf5`: `dir/5/bf/…abf5`).
pub(crate) fn cache_path(dir: &Path, levels: &[usize], key: &[u8]) -> PathBuf {
    let hex = hex::encode(Md5::digest(key));
    let mut path = dir.to_path_buf();
    let mut end = hex.len();
    for &level in levels {
        let start = end.saturating_sub(level);
        path.push(&hex[start..end]);
        end = start;
    }
    path.push(&hex);
    path
}

/// What happened to one cache file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Unlinked {
    /// The file held the key and is gone.
    Removed,
    /// There was no file: the URL was not cached (or nginx's cache manager got there first).
    NotCached,
    /// The file holds another key (or none that could be read): kept.
    OtherKey(Vec<u8>),
    /// No complete `KEY:` line in the start of the file: kept.
    NoKeyLine,
}

/// Deletes the cache file at `path` if, and only if, its `KEY:` line is exactly `key`.
pub(crate) fn unlink_if_key(path: &Path, key: &[u8]) -> io::Result<Unlinked> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Unlinked::NotCached),
        Err(e) => return Err(e),
    };
    let limit = HEADER_ALLOWANCE + KEY_MARK.len() + key.len() + 1;
    let mut head = Vec::with_capacity(limit.min(16 * 1024));
    file.take(limit as u64).read_to_end(&mut head)?;
    match key_line(&head) {
        Some((found, true)) if found == key => match fs::remove_file(path) {
            Ok(()) => Ok(Unlinked::Removed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Unlinked::NotCached),
            Err(e) => Err(e),
        },
        Some((found, true)) => Ok(Unlinked::OtherKey(found.to_vec())),
        Some((_, false)) | None => Ok(Unlinked::NoKeyLine),
    }
}

/// The key in the first `\nKEY: ...` line of a cache file's start, and whether the line
/// ends (with `\n`) inside `head`: a line cut short is never taken as a match.
fn key_line(head: &[u8]) -> Option<(&[u8], bool)> {
    let start = head.windows(KEY_MARK.len()).position(|w| w == KEY_MARK)? + KEY_MARK.len();
    let rest = &head[start..];
    Some(match rest.iter().position(|&b| b == b'\n') {
        Some(end) => (&rest[..end], true),
        None => (rest, false),
    })
}

/// The error for an I/O failure on a cache file (or on `cache_dir`), naming the path.
///
/// Permission denied is permanent and says what to do: nginx's cache files are mode 0600 in
/// 0700 directories owned by the worker user.
pub(crate) fn io_error(path: &Path, e: io::Error) -> PurgeError {
    PurgeError::new(Cause::Io(e.kind()), io_message(path, &e)).with_source(e)
}

/// The message of [`io_error`].
pub(crate) fn io_message(path: &Path, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::PermissionDenied {
        format!(
            "{}: permission denied: nginx cache files are mode 0600 in 0700 directories owned \
             by the nginx worker user; run this process as that user (or root)",
            path.display()
        )
    } else {
        format!("{}: {e}", path.display())
    }
}

/// A short, printable rendering of a key for logs (keys can be long and need not be UTF-8).
pub(crate) fn show_key(key: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(key);
    if text.chars().count() > MAX {
        let mut cut: String = text.chars().take(MAX).collect();
        cut.push('…');
        cut
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer(template: &str, f: impl FnOnce(&mut NginxSettings)) -> KeyRenderer {
        let mut s = NginxSettings {
            key_template: Some(template.parse().unwrap()),
            ..NginxSettings::default()
        };
        f(&mut s);
        KeyRenderer::new(&s).unwrap()
    }

    fn key(r: &KeyRenderer, url: &str) -> String {
        String::from_utf8(r.render(&PurgeUrl::parse(url).unwrap()).unwrap()).unwrap()
    }

    /// The default `key_template` (nginx's *documented* default; nginx 1.22 itself writes
    /// `http://origin/a?x=1` when `proxy_cache_key` is unset, see the module docs).
    #[test]
    fn documented_default_key() {
        let r = renderer("$scheme$proxy_host$request_uri", |s| {
            s.proxy_host = Some("origin".into())
        });
        assert_eq!(key(&r, "/a?x=1"), "httporigin/a?x=1");
        assert_eq!(
            key(&r, "https://example.com/a%20b?x"),
            "httpsorigin/a%20b?x"
        );
        // What nginx 1.22 really uses without proxy_cache_key (checked on a real nginx).
        let r = renderer("http://$proxy_host$request_uri", |s| {
            s.proxy_host = Some("origin".into())
        });
        assert_eq!(key(&r, "/p/a%20b?x=1"), "http://origin/p/a%20b?x=1");
    }

    #[test]
    fn uri_is_args_args_key() {
        let r = renderer("$uri$is_args$args", |_| {});
        assert_eq!(key(&r, "/a"), "/a");
        assert_eq!(key(&r, "/a?x=1&y=%20"), "/a?x=1&y=%20");
        // nginx: $is_args is empty when the query is.
        assert_eq!(key(&r, "/a?"), "/a");
        assert_eq!(key(&r, "/a%20b"), "/a b");
        assert_eq!(key(&r, "/caf%C3%A9"), "/café");
        let r = renderer("$uri$is_args$query_string", |_| {});
        assert_eq!(key(&r, "/a?q"), "/a?q");
    }

    #[test]
    fn host_keys() {
        let r = renderer("${host}$request_uri", |s| {
            s.host_header = Some("Example.COM".parse().unwrap())
        });
        assert_eq!(key(&r, "/a?x=1"), "example.com/a?x=1");
        assert_eq!(key(&r, "http://other.org:8080/b"), "other.org/b");
        assert_eq!(key(&r, "http://[::1]:8080/b"), "[::1]/b");
        let r = renderer("$scheme://$http_host$uri", |s| {
            s.host_header = Some("example.com:8080".parse().unwrap());
            s.scheme = Scheme::Https;
        });
        assert_eq!(key(&r, "/x"), "https://example.com:8080/x");
        assert_eq!(key(&r, "http://a.org/x"), "http://a.org/x");
    }

    #[test]
    fn missing_values_are_refused_up_front() {
        let s = NginxSettings {
            key_template: Some("$host$uri".parse().unwrap()),
            ..NginxSettings::default()
        };
        assert_eq!(KeyRenderer::new(&s).unwrap_err().key, "host_header");
        let s = NginxSettings {
            key_template: Some("$scheme$proxy_host$request_uri".parse().unwrap()),
            ..NginxSettings::default()
        };
        assert_eq!(KeyRenderer::new(&s).unwrap_err().key, "proxy_host");
        let e = KeyRenderer::new(&NginxSettings::default()).unwrap_err();
        assert_eq!(e.key, "key_template");
        assert!(e.message.contains("required"), "{e}");
        // The very error of the loader's check, not a second wording of it.
        let s = NginxSettings {
            mode: super::super::NginxMode::Files,
            cache_dir: Some("/var/cache/nginx".parse().unwrap()),
            ..NginxSettings::default()
        };
        assert_eq!(s.check().unwrap_err(), e);
    }

    #[test]
    fn uri_is_normalised_like_nginx() {
        let uri = |p: &str| nginx_uri(p).map(|u| String::from_utf8(u).unwrap());
        assert_eq!(uri("/").unwrap(), "/");
        assert_eq!(uri("//a///b").unwrap(), "/a/b");
        assert_eq!(uri("/a/").unwrap(), "/a/");
        assert_eq!(uri("/a//").unwrap(), "/a/");
        assert_eq!(uri("/./a/./b").unwrap(), "/a/b");
        assert_eq!(uri("/a/.").unwrap(), "/a/");
        assert_eq!(uri("/a/b/..").unwrap(), "/a/");
        assert_eq!(uri("/a/..").unwrap(), "/");
        assert_eq!(uri("/a/../b").unwrap(), "/b");
        assert_eq!(uri("/a/%2e%2E/b").unwrap(), "/b");
        assert_eq!(uri("/a%2Fb").unwrap(), "/a/b");
        assert_eq!(uri("/a%25b").unwrap(), "/a%b");
        assert_eq!(uri("/a%3Fb").unwrap(), "/a?b");
        assert_eq!(uri("/.../.a").unwrap(), "/.../.a");
        assert_eq!(uri("/.."), Err(NoKey::Rejected("a `..` above the root")));
        assert!(uri("/a/../..").is_err());
        assert!(uri("/a%00").is_err());
        assert_eq!(nginx_uri("/%FF").unwrap(), b"/\xff");
    }

    #[test]
    fn cache_paths() {
        let dir = Path::new("/c");
        assert_eq!(
            cache_path(dir, &[1, 2], b"/a"),
            Path::new("/c/5/bf/0639767f3e9eaad729b54037a7e2abf5")
        );
        assert_eq!(
            cache_path(dir, &[2], b"/a"),
            Path::new("/c/f5/0639767f3e9eaad729b54037a7e2abf5")
        );
        assert_eq!(
            cache_path(dir, &[1, 1, 2], b"/a"),
            Path::new("/c/5/f/ab/0639767f3e9eaad729b54037a7e2abf5")
        );
        assert_eq!(
            cache_path(dir, &[], b"/a"),
            Path::new("/c/0639767f3e9eaad729b54037a7e2abf5")
        );
        assert_eq!(
            cache_path(dir, &[2, 2, 2], b"/a"),
            Path::new("/c/f5/ab/e2/0639767f3e9eaad729b54037a7e2abf5")
        );
    }

    /// A cache file as nginx writes it: a binary header (with bytes like `\n` and `KEY`
    /// scattered in it), the key line, then the response.
    fn fake_cache_file(path: &Path, key: &[u8]) {
        let mut data: Vec<u8> = (0..336u32).map(|i| (i * 7 % 256) as u8).collect();
        data[10] = b'\n';
        data[20..23].copy_from_slice(b"KEY");
        data.extend_from_slice(b"\nKEY: ");
        data.extend_from_slice(key);
        data.extend_from_slice(b"\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    #[test]
    fn only_a_file_with_the_exact_key_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = cache_path(dir.path(), &[1, 2], b"/a");
        fake_cache_file(&path, b"/a");
        assert_eq!(unlink_if_key(&path, b"/a").unwrap(), Unlinked::Removed);
        assert!(!path.exists());
        assert_eq!(unlink_if_key(&path, b"/a").unwrap(), Unlinked::NotCached);

        fake_cache_file(&path, b"/a?x=1");
        assert_eq!(
            unlink_if_key(&path, b"/a").unwrap(),
            Unlinked::OtherKey(b"/a?x=1".to_vec())
        );
        assert!(path.exists());
        // A key that is a prefix of ours is another key too.
        fake_cache_file(&path, b"/");
        assert!(matches!(
            unlink_if_key(&path, b"/a"),
            Ok(Unlinked::OtherKey(_))
        ));
        assert!(path.exists());

        fs::write(&path, b"\x05\x00\x00garbage without a key line").unwrap();
        assert_eq!(unlink_if_key(&path, b"/a").unwrap(), Unlinked::NoKeyLine);
        assert!(path.exists());
    }

    #[test]
    fn a_truncated_key_line_never_matches() {
        assert_eq!(key_line(b"xx\nKEY: /a\nrest"), Some((&b"/a"[..], true)));
        assert_eq!(key_line(b"xx\nKEY: /a"), Some((&b"/a"[..], false)));
        assert_eq!(key_line(b"no key here"), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"\x05\x00\nKEY: /a").unwrap();
        assert_eq!(unlink_if_key(&path, b"/a").unwrap(), Unlinked::NoKeyLine);
        assert!(path.exists());
    }

    #[test]
    fn permission_denied_is_permanent_and_explained() {
        let e = io_error(
            Path::new("/var/cache/nginx/5/bf/x"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.cause(), &Cause::Io(io::ErrorKind::PermissionDenied));
        assert!(!e.is_transient());
        assert!(e.message().contains("/var/cache/nginx/5/bf/x"), "{e}");
        assert!(e.message().contains("0600"), "{e}");
        let e = io_error(Path::new("/x"), io::Error::other("disk on fire"));
        assert_eq!(e.cause(), &Cause::Io(io::ErrorKind::Other));
        assert!(e.is_transient());
    }
}
