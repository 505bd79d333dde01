//! What a purge is about: URLs, URL prefixes, tags, or everything.
//!
//! Every URL that enters the pipeline goes through [`PurgeUrl::parse`], which normalises it to
//! one canonical, ASCII-only form: anything that is not allowed in a URI (spaces, quotes,
//! control characters such as a newline, non-ASCII) is percent-encoded and a fragment is cut
//! off. So a backend never sees a character that could end a Varnish CLI command, close a
//! quoted ban expression or split an HTTP request line.
//!
//! ```
//! use cache_purge_hooks_core::{PurgeUrl, Target};
//!
//! let url = PurgeUrl::parse("/posts/café \"x\"#comments").unwrap();
//! assert_eq!(url.as_str(), "/posts/caf%C3%A9%20%22x%22");
//!
//! let abs = PurgeUrl::parse("https://Example.COM/a?b=1").unwrap();
//! assert_eq!(abs.host(), Some("example.com"));
//! assert_eq!(abs.path_and_query(), "/a?b=1");
//!
//! assert!(PurgeUrl::parse("posts/1").is_err()); // relative: which page would that be?
//! assert_eq!(Target::url("/").unwrap().to_string(), "url /");
//! ```

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// An error for a target that cannot be purged as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid purge target {input:?}: {reason}")]
pub struct InvalidTarget {
    /// The input as it was given (truncated to 200 characters).
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl InvalidTarget {
    fn new(input: &str, reason: &'static str) -> Self {
        let input = if input.chars().count() > 200 {
            let mut s: String = input.chars().take(200).collect();
            s.push('…');
            s
        } else {
            input.to_owned()
        };
        Self { input, reason }
    }
}

/// A normalised URL to purge: either a path (`/posts/a?page=2`) or an absolute `http`/`https`
/// URL whose host routes the purge (`https://example.com/posts/a`).
///
/// The text is the request target a browser sends (see [`PurgeUrl::parse`]): always ASCII,
/// never whitespace, `"`, `<`, `>` or control characters. It may hold characters that are
/// special elsewhere (`'`, `|`, `^`, `[`, `]`, and `\` in a query), so every backend escapes
/// what it sends.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PurgeUrl {
    text: String,
    /// Byte offset where the path starts (0 for a bare path).
    path_start: usize,
    /// Byte range of the host inside `text`, for absolute URLs.
    host: Option<(usize, usize)>,
}

impl PurgeUrl {
    /// Parses and normalises a URL.
    ///
    /// Accepted: a path starting with a single `/`, or an absolute URL starting with `http://`
    /// or `https://` with an ASCII host. The path and query become what a browser sends for
    /// them (the WHATWG URL rules): characters a browser percent-encodes are encoded (`%` is
    /// left alone), tabs and newlines are dropped, `\\` in a path is `/`, literal `.` and `..`
    /// segments are resolved (encoded ones, `%2E`, are kept). A `#fragment` is removed since it is never sent to a server. An absolute
    /// URL with an empty path gets `/`.
    pub fn parse(input: &str) -> Result<Self, InvalidTarget> {
        if input.is_empty() {
            return Err(InvalidTarget::new(input, "empty URL"));
        }
        let without_fragment = match input.find('#') {
            Some(i) => &input[..i],
            None => input,
        };
        if without_fragment.starts_with("//") {
            return Err(InvalidTarget::new(
                input,
                "a URL starting with `//` has no scheme; write `https://host/path` or `/path`",
            ));
        }
        if without_fragment.starts_with('/') {
            let text = browser_form(without_fragment).into_owned();
            if text.starts_with("//") {
                // `/\host` or `/.//host`: a browser would read a host there.
                return Err(InvalidTarget::new(
                    input,
                    "a URL starting with `//` has no scheme; write `https://host/path` or `/path`",
                ));
            }
            return Ok(Self {
                text,
                path_start: 0,
                host: None,
            });
        }
        let lower_head: String = without_fragment
            .chars()
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        let (scheme, rest) = if lower_head.starts_with("https://") {
            ("https://", &without_fragment[8..])
        } else if lower_head.starts_with("http://") {
            ("http://", &without_fragment[7..])
        } else {
            return Err(InvalidTarget::new(
                input,
                "a URL must be a path starting with `/` or an absolute `http://` or `https://` URL",
            ));
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if authority.is_empty() {
            return Err(InvalidTarget::new(input, "absolute URL without a host"));
        }
        if authority.contains('@') {
            return Err(InvalidTarget::new(
                input,
                "credentials in a purge URL are not supported",
            ));
        }
        if !authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
        {
            return Err(InvalidTarget::new(
                input,
                "the host of an absolute URL must be ASCII (use its punycode form)",
            ));
        }
        let mut text = String::with_capacity(without_fragment.len() + 1);
        text.push_str(scheme);
        let host_start = text.len();
        text.push_str(&authority.to_ascii_lowercase());
        let host_end = text.len();
        let path_start = text.len();
        let tail = &rest[authority_end..];
        let tail = if tail.starts_with('/') {
            browser_form(tail)
        } else {
            Cow::Owned(browser_form(&format!("/{tail}")).into_owned())
        };
        text.push_str(&tail);
        Ok(Self {
            text,
            path_start,
            host: Some((host_start, host_end)),
        })
    }

    /// [`PurgeUrl::parse`] of an owned string, keeping its buffer when it is a path already in
    /// the browser form (what a template of the derive renders): no second allocation or copy.
    /// Anything else goes through `parse`, so the result is the same either way.
    fn parse_owned(input: String) -> Result<Self, InvalidTarget> {
        // `is_browser_form` is false for a `#` anywhere, so there is no fragment to cut.
        if input.starts_with('/') && !input.starts_with("//") && is_browser_form(&input) {
            return Ok(Self {
                text: input,
                path_start: 0,
                host: None,
            });
        }
        Self::parse(&input)
    }

    /// The whole normalised URL.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The host (with port, if any) of an absolute URL; `None` for a path.
    pub fn host(&self) -> Option<&str> {
        self.host.map(|(a, b)| &self.text[a..b])
    }

    /// The `https://` or `http://` scheme of an absolute URL; `None` for a path.
    pub fn scheme(&self) -> Option<&str> {
        self.host.map(|(a, _)| &self.text[..a - 3])
    }

    /// The path and query: what goes on an HTTP request line (`/a?b=1`).
    pub fn path_and_query(&self) -> &str {
        &self.text[self.path_start..]
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        let pq = self.path_and_query();
        match pq.find('?') {
            Some(i) => &pq[..i],
            None => pq,
        }
    }

    /// The query without the `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        let pq = self.path_and_query();
        pq.find('?').map(|i| &pq[i + 1..])
    }

    /// Whether this is an absolute URL (with a host).
    pub fn is_absolute(&self) -> bool {
        self.host.is_some()
    }
}

impl fmt::Display for PurgeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for PurgeUrl {
    type Err = InvalidTarget;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The path and query of `input` (which starts with `/`) as a browser sends them, by the
/// WHATWG URL rules: tabs and newlines dropped, trailing spaces and controls trimmed, `\\`
/// read as `/` in the path, the path percent-encode set (controls, space, `"`, `#`, `<`,
/// `>`, `` ` ``, `{`, `}`, non-ASCII) encoded in the path and the special-query set
/// (controls, space, `"`, `#`, `<`, `>`, `'`) in the query, `%` left as it is, and literal
/// `.` and `..` segments resolved. A cache keys its entries by what clients send, so any
/// other spelling would miss them.
///
/// Unlike a browser, an *encoded* dot segment (`%2E%2E`) is kept: that is how a template
/// writes a `..` value as one segment that cannot walk up the path.
///
/// Most inputs are already in that form (a template's expansion, a URL read from a
/// response); they are returned as they are, borrowed, after one scan that finds nothing to
/// change, rather than rebuilt byte by byte (the slow path was most of a save's template
/// cost).
fn browser_form(input: &str) -> Cow<'_, str> {
    if is_browser_form(input) {
        Cow::Borrowed(input)
    } else {
        Cow::Owned(browser_form_rebuilt(input))
    }
}

/// Whether [`browser_form_rebuilt`] would return `input` unchanged: nothing to trim at the
/// end, nothing to drop, turn into `/` or percent-encode, and no `.` or `..` segment in the
/// path. The byte sets are the ones `browser_form_rebuilt` tests, kept beside it.
fn is_browser_form(input: &str) -> bool {
    let bytes = input.as_bytes();
    if bytes.last().is_some_and(|&b| b <= b' ') {
        return false;
    }
    let mut segment_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // Most bytes need one look-up.
        if PATH_BYTE_AS_IS[usize::from(b)] {
            continue;
        }
        match b {
            b'/' | b'?' => {
                if is_dot_segment(&bytes[segment_start..i]) {
                    return false;
                }
                segment_start = i + 1;
                if b == b'?' {
                    return is_query_form(&bytes[i + 1..]);
                }
            }
            // Controls (tab, CR and LF included), space, non-ASCII and the characters a
            // browser encodes in a path.
            _ => return false,
        }
    }
    !is_dot_segment(&bytes[segment_start..])
}

/// The bytes [`is_browser_form`] passes over in a path: printable ASCII but the space, `\`,
/// `"`, `#`, `<`, `>`, `` ` ``, `{`, `}`, and the `/` and `?` it looks at.
static PATH_BYTE_AS_IS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = b'!';
    while b < 0x7f {
        table[b as usize] = !matches!(
            b,
            b'\\' | b'"' | b'#' | b'<' | b'>' | b'`' | b'{' | b'}' | b'/' | b'?'
        );
        b += 1;
    }
    table
};

/// Whether a query (after the `?`, controls and non-ASCII already excluded up to it) needs
/// no change.
fn is_query_form(query: &[u8]) -> bool {
    query.iter().all(|&b| QUERY_BYTE_AS_IS[usize::from(b)])
}

/// The bytes [`is_query_form`] passes over: printable ASCII but the space, `"`, `#`, `<`, `>`
/// and `'` (the special-query percent-encode set).
static QUERY_BYTE_AS_IS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = b'!';
    while b < 0x7f {
        table[b as usize] = !matches!(b, b'"' | b'#' | b'<' | b'>' | b'\'');
        b += 1;
    }
    table
};

/// A literal `.` or `..` path segment (encoded ones are kept, see [`browser_form`]).
fn is_dot_segment(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

/// [`browser_form`] built byte by byte: every input, whatever it holds.
fn browser_form_rebuilt(input: &str) -> String {
    let input = input.trim_end_matches(|c: char| c <= ' ');
    let (path, query) = match input.find('?') {
        Some(i) => (&input[..i], Some(&input[i + 1..])),
        None => (input, None),
    };
    let mut encoded_path = String::with_capacity(path.len() + 8);
    for &b in path.as_bytes() {
        match b {
            b'\t' | b'\n' | b'\r' => {}
            b'\\' => encoded_path.push('/'),
            _ if b <= b' ' || b >= 0x7f || b"\"#<>`{}".contains(&b) => {
                push_escape(&mut encoded_path, b)
            }
            _ => encoded_path.push(b as char),
        }
    }
    let mut out = remove_dot_segments(&encoded_path);
    if let Some(query) = query {
        out.push('?');
        for &b in query.as_bytes() {
            match b {
                b'\t' | b'\n' | b'\r' => {}
                _ if b <= b' ' || b >= 0x7f || b"\"#<>'".contains(&b) => push_escape(&mut out, b),
                _ => out.push(b as char),
            }
        }
    }
    out
}

/// Resolves literal `.` and `..` segments as browsers do (`/a/./b/../c` → `/a/c`); `..` at
/// the root stays at the root.
fn remove_dot_segments(path: &str) -> String {
    if !path.split('/').any(|s| s == "." || s == "..") {
        return path.to_owned();
    }
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    for (i, segment) in parts.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
        // A trailing `.` or `..` leaves a directory: `/a/b/..` is `/a/`.
        if i == last && matches!(*segment, "." | "..") {
            segments.push("");
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

pub(crate) fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 0xf) as usize] as char);
}

/// A cache tag (a surrogate key): what tag-capable backends purge by.
///
/// Tags are 1 to 1024 visible ASCII characters without `,`, `"` or `\`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Validates a tag.
    pub fn parse(input: &str) -> Result<Self, InvalidTarget> {
        if input.is_empty() || input.len() > 1024 {
            return Err(InvalidTarget::new(
                input,
                "a tag must be 1 to 1024 characters",
            ));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'"' | b'\\'))
        {
            return Err(InvalidTarget::new(
                input,
                "a tag may only hold visible ASCII characters other than `,`, `\"` and `\\`",
            ));
        }
        Ok(Self(input.to_owned()))
    }

    /// The tag's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This tag, or a deterministic shorter stand-in when it is longer than `max_len` bytes.
    ///
    /// A tag that fits is returned as it is. A longer one becomes a prefix of itself, `~` and
    /// the 128-bit XXH3 digest of the whole tag in 32 lowercase hex digits, `max_len` bytes in
    /// all: `post:a-very-long-slug…` → `post:a-very-lo~3f1c…`. Two different tags get the
    /// same stand-in only if their digests collide (about one chance in 2⁶⁴ among 2³² tags).
    ///
    /// The stand-in is the same in every process, on every platform and in every version of
    /// this crate (a test pins one value), because it is written on the response side — a
    /// tower layer fitting a page's tags into a CDN's header — and must be named again on the
    /// purge side: **a backend whose cache only stores tags of at most `max_len` bytes must
    /// purge `tag.shortened(max_len)` too** (it costs nothing when the tag fits: the same tag).
    ///
    /// The stand-in needs 33 bytes (`~` and the digest), so a `max_len` below 33 counts as 33.
    ///
    /// ```
    /// use cache_purge_hooks_core::Tag;
    ///
    /// let short = Tag::parse("post:1").unwrap();
    /// assert_eq!(short.shortened(128), short);
    ///
    /// let long = Tag::parse(&format!("post:{}", "x".repeat(300))).unwrap();
    /// let fitted = long.shortened(128);
    /// assert_eq!(fitted.as_str().len(), 128);
    /// assert!(fitted.as_str().starts_with("post:xxx"));
    /// assert_eq!(fitted, long.shortened(128)); // deterministic
    /// ```
    pub fn shortened(&self, max_len: usize) -> Tag {
        self.fitted(max_len, |_| true)
    }

    /// Like [`shortened`](Self::shortened), for a cache that also restricts the characters of
    /// a tag: a tag that fits in `max_len` bytes and whose every byte `allowed` accepts is
    /// returned as it is; any other becomes a prefix of itself with each byte `allowed`
    /// refuses replaced by `_`, then `~` and the 128-bit XXH3 digest of the whole original tag
    /// (so `post:1` and `post_1` stay apart), `max_len` bytes at most.
    ///
    /// `_`, `~` and the hex digits `0-9a-f` are always used, whatever `allowed` says: a cache
    /// that refuses one of them cannot be given a stand-in. Akamai's `Edge-Cache-Tag`, for
    /// example, refuses `:`, so `post:1` is written (and must be purged) as
    /// `tag.fitted(128, akamai_allows)`.
    ///
    /// ```
    /// use cache_purge_hooks_core::Tag;
    ///
    /// let tag = Tag::parse("post:1").unwrap();
    /// let fitted = tag.fitted(128, |b| b != b':');
    /// assert!(fitted.as_str().starts_with("post_1~"));
    /// assert_eq!(fitted.as_str().len(), "post_1~".len() + 32);
    /// assert_eq!(tag.fitted(128, |_| true), tag);
    /// ```
    pub fn fitted(&self, max_len: usize, allowed: impl Fn(u8) -> bool) -> Tag {
        self.fitted_impl(max_len, allowed)
    }

    /// Whether Akamai's cache tags (`Edge-Cache-Tag`, Fast Purge's `tag` objects) accept byte
    /// `b`: letters, digits and ``!#$%'+.^_`|~-`` (what both Akamai's "Cache tag
    /// requirements" table and its Property Manager `cacheTag` behavior allow; `:`, `/`, `=`,
    /// `@`, `,` and the like are refused).
    pub fn akamai_allows(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%'+.^_`|~-".contains(&b)
    }

    /// The form of this tag that Akamai stores and purges: itself when it is at most 128
    /// characters of [`akamai_allows`](Self::akamai_allows), else its
    /// [`fitted`](Self::fitted) stand-in. An `Edge-Cache-Tag` header must carry this form
    /// and the purge must name it (`post:1` is `post_1~<digest>` on both sides).
    ///
    /// ```
    /// use cache_purge_hooks_core::Tag;
    ///
    /// assert_eq!(Tag::parse("post-1").unwrap().akamai_form().as_str(), "post-1");
    /// assert!(Tag::parse("post:1").unwrap().akamai_form().as_str().starts_with("post_1~"));
    /// ```
    pub fn akamai_form(&self) -> Tag {
        self.fitted(128, Self::akamai_allows)
    }

    fn fitted_impl(&self, max_len: usize, allowed: impl Fn(u8) -> bool) -> Tag {
        /// `~` and 32 hex digits.
        const SUFFIX: usize = 33;
        let text = self.0.as_bytes();
        if text.len() <= max_len && text.iter().all(|&b| allowed(b)) {
            return self.clone();
        }
        let max_len = max_len.max(SUFFIX);
        let digest = twox_hash::XxHash3_128::oneshot(text);
        let prefix_len = text.len().min(max_len - SUFFIX);
        let mut out = String::with_capacity(prefix_len + SUFFIX);
        for &b in &text[..prefix_len] {
            out.push(if allowed(b) { b as char } else { '_' });
        }
        out.push('~');
        out.push_str(&format!("{digest:032x}"));
        Tag(out)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One thing to purge.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Target {
    /// Exactly this URL (path and query as given; no other URL).
    Url(PurgeUrl),
    /// Every URL that starts with this one. Only backends with
    /// [`Capabilities::PREFIX`](crate::backend::Capabilities::PREFIX) can purge it.
    Prefix(PurgeUrl),
    /// Every object carrying this tag. Only backends with
    /// [`Capabilities::TAG`](crate::backend::Capabilities::TAG) can purge it.
    Tag(Tag),
    /// Everything in the cache.
    Everything,
}

impl Target {
    /// A URL target, parsed and normalised by [`PurgeUrl::parse`].
    pub fn url(url: &str) -> Result<Self, InvalidTarget> {
        PurgeUrl::parse(url).map(Self::Url)
    }

    /// A prefix target.
    pub fn prefix(prefix: &str) -> Result<Self, InvalidTarget> {
        PurgeUrl::parse(prefix).map(Self::Prefix)
    }

    /// A tag target.
    pub fn tag(tag: &str) -> Result<Self, InvalidTarget> {
        Tag::parse(tag).map(Self::Tag)
    }

    /// The kind of target, for capability checks and messages.
    pub fn kind(&self) -> TargetKind {
        match self {
            Self::Url(_) => TargetKind::Url,
            Self::Prefix(_) => TargetKind::Prefix,
            Self::Tag(_) => TargetKind::Tag,
            Self::Everything => TargetKind::Everything,
        }
    }

    /// The URL of a [`Target::Url`], if it is one.
    pub fn as_url(&self) -> Option<&PurgeUrl> {
        match self {
            Self::Url(u) => Some(u),
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(u) => write!(f, "url {u}"),
            Self::Prefix(u) => write!(f, "prefix {u}"),
            Self::Tag(t) => write!(f, "tag {t}"),
            Self::Everything => f.write_str("everything"),
        }
    }
}

/// Parses what [`Target`]'s `Display` writes (`url /a?b=1`, `prefix /blog/`, `tag post-1`,
/// `everything`): the stable text form used to store targets (the outbox).
///
/// ```
/// use cache_purge_hooks_core::Target;
///
/// let t = Target::url("/a b?x=1").unwrap();
/// assert_eq!(t.to_string(), "url /a%20b?x=1");
/// assert_eq!(t.to_string().parse::<Target>().unwrap(), t);
/// ```
impl std::str::FromStr for Target {
    type Err = InvalidTarget;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, value) = s.split_once(' ').unwrap_or((s, ""));
        match kind {
            "url" => Target::url(value),
            "prefix" => Target::prefix(value),
            "tag" => Target::tag(value),
            "everything" if value.is_empty() => Ok(Target::Everything),
            _ => Err(InvalidTarget::new(
                s,
                "not a stored target: expected `url ...`, `prefix ...`, `tag ...` or `everything`",
            )),
        }
    }
}

/// The kinds of [`Target`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TargetKind {
    /// [`Target::Url`]
    Url,
    /// [`Target::Prefix`]
    Prefix,
    /// [`Target::Tag`]
    Tag,
    /// [`Target::Everything`]
    Everything,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Url => "url",
            Self::Prefix => "prefix",
            Self::Tag => "tag",
            Self::Everything => "everything",
        })
    }
}

/// Something a resolver may return as one purge target.
///
/// Strings are URLs. There is deliberately no impl for `char`: a resolver cannot return a
/// `String` where a list is expected and have it purged character by character (the seed's
/// bug), because `String` is not an iterator of targets.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a purge target",
    label = "a resolver must yield URLs (`String`, `&str`), `PurgeUrl`s, `Tag`s or `Target`s",
    note = "strings are URLs: a path starting with `/` or an absolute `http(s)://` URL"
)]
pub trait IntoTarget {
    /// Converts into a target, or says why it cannot be one.
    fn into_target(self) -> Result<Target, InvalidTarget>;
}

impl IntoTarget for Target {
    fn into_target(self) -> Result<Target, InvalidTarget> {
        Ok(self)
    }
}
impl IntoTarget for PurgeUrl {
    fn into_target(self) -> Result<Target, InvalidTarget> {
        Ok(Target::Url(self))
    }
}
impl IntoTarget for Tag {
    fn into_target(self) -> Result<Target, InvalidTarget> {
        Ok(Target::Tag(self))
    }
}
impl IntoTarget for &str {
    fn into_target(self) -> Result<Target, InvalidTarget> {
        Target::url(self)
    }
}
impl IntoTarget for String {
    fn into_target(self) -> Result<Target, InvalidTarget> {
        PurgeUrl::parse_owned(self).map(Target::Url)
    }
}
impl IntoTarget for &String {
    fn into_target(self) -> Result<Target, InvalidTarget> {
        Target::url(self)
    }
}
impl IntoTarget for Cow<'_, str> {
    fn into_target(self) -> Result<Target, InvalidTarget> {
        match self {
            Cow::Owned(text) => text.into_target(),
            Cow::Borrowed(text) => Target::url(text),
        }
    }
}
impl IntoTarget for url::Url {
    fn into_target(self) -> Result<Target, InvalidTarget> {
        Target::url(self.as_str())
    }
}
impl<T: IntoTarget> IntoTarget for Result<T, InvalidTarget> {
    fn into_target(self) -> Result<Target, InvalidTarget> {
        self.and_then(IntoTarget::into_target)
    }
}

/// The targets an entity resolves to, with any that were rejected.
///
/// Filled by [`PurgeTargets::purge_targets`](crate::PurgeTargets::purge_targets); duplicates
/// are removed as they are pushed, keeping the first occurrence's order.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    targets: Vec<Target>,
    /// An index of `targets` once there are many: deduplicating a bulk write's 200,000
    /// targets must not cost a scan per push.
    index: Option<HashSet<Target>>,
    rejected: Vec<InvalidTarget>,
}

/// Below this many targets, a scan is cheaper than an index.
const INDEX_FROM: usize = 32;

impl PartialEq for Targets {
    /// The same targets in the same order, and the same rejections.
    fn eq(&self, other: &Self) -> bool {
        self.targets.iter().eq(other.targets.iter()) && self.rejected == other.rejected
    }
}

impl Eq for Targets {}

impl Targets {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a target unless it is already present.
    pub fn push(&mut self, target: Target) {
        match &mut self.index {
            Some(index) => {
                if index.insert(target.clone()) {
                    self.targets.push(target);
                }
            }
            None => {
                if !self.targets.contains(&target) {
                    self.targets.push(target);
                    if self.targets.len() >= INDEX_FROM {
                        self.index = Some(self.targets.iter().cloned().collect());
                    }
                }
            }
        }
    }

    /// Adds anything convertible into a target; an invalid one is kept in
    /// [`rejected`](Self::rejected) and logged by the pipeline, never silently dropped.
    pub fn push_any(&mut self, target: impl IntoTarget) {
        match target.into_target() {
            Ok(t) => self.push(t),
            Err(e) => self.rejected.push(e),
        }
    }

    /// Adds every target of an iterator (what a resolver function returns).
    pub fn extend_any<I>(&mut self, targets: I)
    where
        I: IntoIterator,
        I::Item: IntoTarget,
    {
        for t in targets {
            self.push_any(t);
        }
    }

    /// Moves every target and rejection of `other` into `self`.
    pub fn merge(&mut self, other: Targets) {
        for t in other.targets {
            self.push(t);
        }
        self.rejected.extend(other.rejected);
    }

    /// Records a rejection found while resolving.
    pub fn reject(&mut self, rejection: InvalidTarget) {
        self.rejected.push(rejection);
    }

    /// The accepted targets, in order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The inputs that were rejected, with the reason.
    pub fn rejected(&self) -> &[InvalidTarget] {
        &self.rejected
    }

    /// Whether there is no accepted target.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The number of accepted targets.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// The valid targets; each rejected one is logged as an error naming `source` (the
    /// entity's type, say), the input and the reason, so that no rejection goes unseen.
    pub fn into_valid(self, source: &str) -> Vec<Target> {
        let (targets, rejected) = self.into_parts();
        for r in rejected {
            tracing::error!(
                target: "cache_purge_hooks",
                source,
                input = %r.input,
                reason = r.reason,
                "purge target rejected"
            );
        }
        targets
    }

    /// Splits into the accepted targets and the rejections.
    pub fn into_parts(self) -> (Vec<Target>, Vec<InvalidTarget>) {
        (self.targets, self.rejected)
    }

    /// The accepted URLs as strings (convenient in tests and logs).
    pub fn urls(&self) -> Vec<&str> {
        self.targets
            .iter()
            .filter_map(|t| t.as_url().map(PurgeUrl::as_str))
            .collect()
    }
}

impl<T: IntoTarget> FromIterator<T> for Targets {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut t = Targets::new();
        t.extend_any(iter);
        t
    }
}

impl IntoIterator for Targets {
    type Item = Target;
    type IntoIter = std::vec::IntoIter<Target>;
    fn into_iter(self) -> Self::IntoIter {
        self.targets.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_what_a_browser_sends() {
        let cases = [
            ("/", "/"),
            ("/a b", "/a%20b"),
            // Browsers drop tabs and newlines, and read `\` as `/` in a path.
            ("/a\nb", "/ab"),
            ("/a\\b", "/a/b"),
            ("/a\"b", "/a%22b"),
            ("/é", "/%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/a%zz", "/a%zz"),
            ("/a/%2E%2E/b", "/a/%2E%2E/b"),
            ("/../a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a b ", "/a%20b"),
            ("/a{b}`<c>", "/a%7Bb%7D%60%3Cc%3E"),
            ("/a|b^c[d]'e", "/a|b^c[d]'e"),
            ("/a?x=1&y=2", "/a?x=1&y=2"),
            ("/a?q=it's \"x\"", "/a?q=it%27s%20%22x%22"),
            ("/a/./b/../c", "/a/c"),
            ("/a#frag", "/a"),
            ("/a?x=1#frag", "/a?x=1"),
        ];
        for (input, want) in cases {
            assert_eq!(PurgeUrl::parse(input).unwrap().as_str(), want, "{input:?}");
        }
    }

    #[test]
    fn absolute_urls_keep_host_and_scheme() {
        let u = PurgeUrl::parse("HTTPS://Example.com:8443?q=1").unwrap();
        assert_eq!(u.as_str(), "https://example.com:8443/?q=1");
        assert_eq!(u.scheme(), Some("https"));
        assert_eq!(u.host(), Some("example.com:8443"));
        assert_eq!(u.path_and_query(), "/?q=1");
        assert_eq!(u.path(), "/");
        assert_eq!(u.query(), Some("q=1"));
        let p = PurgeUrl::parse("/x?y").unwrap();
        assert_eq!(
            (p.host(), p.scheme(), p.path(), p.query()),
            (None, None, "/x", Some("y"))
        );
    }

    #[test]
    fn bad_urls_are_rejected_with_a_reason() {
        for bad in [
            "",
            "posts/1",
            "//evil.com/x",
            "ftp://x/",
            "https:///x",
            "http://a b/",
        ] {
            let err = PurgeUrl::parse(bad).unwrap_err();
            assert!(!err.reason.is_empty(), "{bad:?}");
        }
        assert!(PurgeUrl::parse("http://user@h/").is_err());
        assert!(PurgeUrl::parse("https://exämple.com/").is_err());
    }

    #[test]
    fn targets_dedupe_and_keep_rejections() {
        let mut t = Targets::new();
        t.extend_any(["/a", "/b", "/a", "nope"]);
        assert_eq!(t.urls(), ["/a", "/b"]);
        assert_eq!(t.rejected().len(), 1);
        assert_eq!(t.rejected()[0].input, "nope");
    }

    #[test]
    fn many_targets_keep_their_order_and_dedupe_past_the_index_threshold() {
        let mut t = Targets::new();
        for round in 0..2 {
            for i in 0..1000 {
                t.push_any(format!("/p/{i}"));
            }
            assert_eq!(t.len(), 1000, "round {round}");
        }
        assert_eq!(t.urls()[0], "/p/0");
        assert_eq!(t.urls()[999], "/p/999");
        let mut small = Targets::new();
        small.extend_any(["/a", "/b"]);
        let mut other = Targets::new();
        other.extend_any(["/a", "/b", "/a"]);
        assert_eq!(small, other);
    }

    #[test]
    fn a_tag_that_fits_is_not_shortened() {
        let tag = Tag::parse("post:1").unwrap();
        assert_eq!(tag.shortened(6), tag);
        assert_eq!(tag.shortened(1024), tag);
    }

    #[test]
    fn shortened_tags_fit_keep_a_prefix_and_end_in_the_digest_of_the_whole_tag() {
        let long = Tag::parse(&format!("post:{}", "a".repeat(1019))).unwrap();
        for max in [33, 34, 100, 128, 1023] {
            let s = long.shortened(max);
            assert_eq!(s.as_str().len(), max, "{max}");
            assert!(Tag::parse(s.as_str()).is_ok(), "{s}");
            let (prefix, digest) = s.as_str().rsplit_once('~').unwrap();
            assert!(long.as_str().starts_with(prefix));
            assert_eq!(digest.len(), 32);
            assert!(
                digest
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        // Below the digest's own length: the digest alone.
        assert_eq!(long.shortened(5).as_str().len(), 33);
        assert!(long.shortened(0).as_str().starts_with('~'));
    }

    #[test]
    fn shortened_tags_are_deterministic_and_tell_tags_with_one_prefix_apart() {
        let a = Tag::parse(&format!("{}-a", "p".repeat(200))).unwrap();
        let b = Tag::parse(&format!("{}-b", "p".repeat(200))).unwrap();
        assert_eq!(a.shortened(64), a.clone().shortened(64));
        assert_ne!(a.shortened(64), b.shortened(64));
        assert_eq!(
            a.shortened(64).as_str()[..31],
            b.shortened(64).as_str()[..31]
        );
    }

    #[test]
    fn shortened_tags_keep_their_known_value_across_versions() {
        // Purgers name the stand-ins that responses were tagged with, possibly by another
        // version of this crate: changing the algorithm must fail this test. The digest is
        // the reference C library's XXH3_128bits of the whole tag (libxxhash 0.8).
        let tag = Tag::parse(&format!("post:{}", "x".repeat(200))).unwrap();
        assert_eq!(
            tag.shortened(64).as_str(),
            "post:xxxxxxxxxxxxxxxxxxxxxxxxxx~6e87647a58ea8b833602fb7cfd36934b"
        );
    }

    #[test]
    fn fitted_tags_replace_refused_characters_and_stay_apart_from_their_lookalikes() {
        let colon = Tag::parse("post:1").unwrap();
        let underscore = Tag::parse("post_1").unwrap();
        let akamai = |b: u8| b != b':';
        let fitted = colon.fitted(128, akamai);
        assert!(fitted.as_str().starts_with("post_1~"), "{fitted}");
        assert_eq!(underscore.fitted(128, akamai), underscore);
        assert_ne!(fitted, underscore);
        assert!(fitted.as_str().len() <= 128);
    }

    #[test]
    fn tags_are_validated() {
        assert!(Tag::parse("post-1").is_ok());
        assert!(Tag::parse("a b").is_err());
        assert!(Tag::parse("a,b").is_err());
        assert!(Tag::parse("").is_err());
    }

    /// Every string of up to `len` characters over `alphabet`.
    fn all_strings(alphabet: &[&str], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn the_browser_form_fast_path_changes_nothing_on_short_inputs() {
        // Every character either path treats specially, and a plain one.
        let alphabet = [
            "/", ".", "?", "a", "%", "\\", "#", " ", "\t", "\n", "\r", "'", "`", "{", "\"", "<",
            "é", "\u{1}", "\u{7f}",
        ];
        for tail in all_strings(&alphabet, 4) {
            let input = format!("/{tail}");
            assert_eq!(
                browser_form(&input),
                browser_form_rebuilt(&input),
                "{input:?}"
            );
        }
        assert!(matches!(
            browser_form("/a/b-c?d=1&e=/f/../g"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn an_owned_url_parses_as_the_same_url_as_a_borrowed_one_on_short_inputs() {
        let alphabet = [
            "/", ".", "?", "a", "%", "\\", "#", " ", "\t", "\n", "'", "{", "é", "\u{1}", ":",
        ];
        for tail in all_strings(&alphabet, 4) {
            for input in [tail.clone(), format!("/{tail}"), format!("http://h{tail}")] {
                let borrowed = PurgeUrl::parse(&input);
                let owned = input.clone().into_target();
                assert_eq!(owned, borrowed.map(Target::Url), "{input:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn the_browser_form_fast_path_changes_nothing(
            s in "/[/.?a-z0-9%#\\\\ \t\r\n'`{}\"<>é\u{1}\u{7f}-]{0,40}"
        ) {
            proptest::prop_assert_eq!(browser_form(&s), browser_form_rebuilt(&s));
        }

        #[test]
        fn normalised_urls_are_safe_for_every_backend(s in "/\\PC{0,40}") {
            if let Ok(u) = PurgeUrl::parse(&s) {
                let text = u.as_str();
                proptest::prop_assert!(text.is_ascii());
                let unsafe_byte = |b: u8| b.is_ascii_control() || b" \"#<>".contains(&b);
                proptest::prop_assert!(!text.bytes().any(unsafe_byte), "{}", text);
                // Normalising is idempotent.
                let again = PurgeUrl::parse(text).unwrap();
                proptest::prop_assert_eq!(again.as_str(), text);
                // The stored text form round-trips.
                let target = Target::Url(u.clone());
                proptest::prop_assert_eq!(target.to_string().parse::<Target>().unwrap(), target);
            }
        }
    }
}
