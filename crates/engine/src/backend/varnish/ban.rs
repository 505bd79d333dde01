//! Ban expressions: URLs turned into anchored, fully escaped regular expressions, batched
//! into as few bans as the length limit allows.
//!
//! Every byte of a URL that means something to PCRE is escaped, so `/foo` never bans
//! `/foobar` and `/a?b` matches the literal `?`. Bytes that must never reach Varnish's CLI
//! raw (space, `"`, `\`, control characters, non-ASCII) are written `\xHH`: a CLI argument
//! cannot hold a space (varnishd's manager splits it again when it relays the command to
//! the child), and a newline would end the command. A [`PurgeUrl`] has no space, quote or
//! control character (it may hold `\` in a query), but the escaping does not rely on that.
//!
//! ```text
//! /a, /b?x=1 (host example.com)  ──►  req.http.host ~ ^(?i)example\.com(:[0-9]+)?$
//!                                      && req.url ~ ^(?:/a|/b\?x=1)$
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::settings::BanStyle;
use crate::target::{PurgeUrl, Target};

/// One ban condition: `field operator argument`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `req.url`, `obj.http.x-url`, `obj.status`, ...
    pub field: String,
    /// `~`, `==`, `!=`.
    pub operator: &'static str,
    /// The regex or value, as Varnish should see it (before CLI quoting).
    pub argument: String,
}

/// A ban: conditions joined by `&&`, and the targets it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    /// The conditions, all of which must hold.
    pub conditions: Vec<Condition>,
    /// The targets this ban purges.
    pub targets: Vec<Target>,
}

impl Ban {
    /// The expression as `ban.list` shows it: `req.url ~ ^/a$ && ...`.
    pub fn expression(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.conditions.iter().enumerate() {
            if i > 0 {
                out.push_str(" && ");
            }
            let _ = write!(out, "{} {} {}", c.field, c.operator, c.argument);
        }
        out
    }

    /// The admin-CLI command line (without the newline): `ban` and every word quoted, so
    /// that nothing in an argument can end the command or start another one.
    pub fn cli_command(&self) -> String {
        let mut out = String::from("ban");
        for (i, c) in self.conditions.iter().enumerate() {
            if i > 0 {
                out.push_str(" &&");
            }
            out.push(' ');
            out.push_str(&c.field);
            out.push(' ');
            out.push_str(c.operator);
            out.push(' ');
            push_cli_quoted(&mut out, &c.argument);
        }
        out
    }

    /// The same command as separate arguments, for `varnishadm` (which joins its arguments
    /// with spaces and sends them unquoted: each one is already CLI-quoted here).
    pub fn cli_args(&self) -> Vec<String> {
        let mut args = vec!["ban".to_owned()];
        for (i, c) in self.conditions.iter().enumerate() {
            if i > 0 {
                args.push("&&".to_owned());
            }
            args.push(c.field.clone());
            args.push(c.operator.to_owned());
            let mut quoted = String::new();
            push_cli_quoted(&mut quoted, &c.argument);
            args.push(quoted);
        }
        args
    }
}

/// Quotes one CLI argument: `"` ... `"`, with `\` and `"` backslash-escaped (varnishd
/// decodes backslash sequences in every argument, quoted or not), and every byte outside
/// printable ASCII written `\xHH`.
pub fn push_cli_quoted(out: &mut String, arg: &str) {
    out.push('"');
    for b in arg.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x21..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
}

/// Appends the PCRE form of `text` that matches exactly `text`, byte for byte.
pub fn push_regex_literal(out: &mut String, text: &str) {
    for b in text.bytes() {
        match b {
            b'a'..=b'z'
            | b'A'..=b'Z'
            | b'0'..=b'9'
            | b'/'
            | b'-'
            | b'_'
            | b'~'
            | b'%'
            | b'='
            | b'&'
            | b','
            | b':'
            | b'@'
            | b';'
            | b'!'
            | b'\'' => out.push(b as char),
            // A backslash before punctuation makes it literal in PCRE, whatever it is; but
            // `\<` and `\>` are word boundaries to some engines, so those are written in hex.
            b'"' | b'\\' | b'<' | b'>' => {
                let _ = write!(out, "\\x{b:02x}");
            }
            0x21..=0x7e => {
                out.push('\\');
                out.push(b as char);
            }
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

/// A host condition's regex: the host, any case, with or without a port unless it has one.
pub fn host_regex(host: &str) -> String {
    let mut out = String::from("^(?i)");
    push_regex_literal(&mut out, host);
    if !host.contains(':') || host.ends_with(']') {
        out.push_str("(:[0-9]+)?");
    }
    out.push('$');
    out
}

/// What a backend needs to know to write bans.
#[derive(Clone, Debug)]
pub struct BanBuilder {
    /// Which fields the conditions test.
    pub style: BanStyle,
    /// The object header holding the URL (`lurker` style).
    pub url_header: String,
    /// The object header holding the host (`lurker` style).
    pub host_header: String,
    /// The host of URLs given as paths (`site_domain`).
    pub site_domain: Option<String>,
    /// The longest URL regex of one ban, in bytes.
    pub max_length: usize,
    /// The object header holding the tags, when tags are banned (`tags = "ban"`); `None`
    /// leaves tag targets unbanned.
    pub tag_header: Option<String>,
}

impl BanBuilder {
    pub(crate) fn url_field(&self) -> String {
        match self.style {
            BanStyle::Lurker => format!("obj.http.{}", self.url_header),
            _ => "req.url".to_owned(),
        }
    }

    pub(crate) fn host_field(&self) -> String {
        match self.style {
            BanStyle::Lurker => format!("obj.http.{}", self.host_header),
            _ => "req.http.host".to_owned(),
        }
    }

    /// The bans for a batch: one per host and target kind, more when an alternation would
    /// pass `max_length`. Targets this builder cannot ban (tags, without a `tag_header`) are
    /// returned apart.
    pub fn bans(&self, batch: &[Target]) -> (Vec<Ban>, Vec<Target>) {
        // host (None = any) → (exact URLs, prefixes)
        type Group<'a> = (
            Vec<(&'a PurgeUrl, &'a Target)>,
            Vec<(&'a PurgeUrl, &'a Target)>,
        );
        let mut groups: BTreeMap<Option<&str>, Group<'_>> = BTreeMap::new();
        let mut bans = Vec::new();
        let mut other = Vec::new();
        let mut tags = Vec::new();
        for target in batch {
            match target {
                Target::Url(u) | Target::Prefix(u) => {
                    let host = u.host().or(self.site_domain.as_deref());
                    let group = groups.entry(host).or_default();
                    if matches!(target, Target::Url(_)) {
                        group.0.push((u, target));
                    } else {
                        group.1.push((u, target));
                    }
                }
                Target::Everything => bans.push(self.everything()),
                Target::Tag(tag) if self.tag_header.is_some() => tags.push((tag.as_str(), target)),
                _ => other.push(target.clone()),
            }
        }
        for (host, (urls, prefixes)) in groups {
            let urls: Vec<_> = urls.iter().map(|(u, t)| (u.path_and_query(), *t)).collect();
            let prefixes: Vec<_> = prefixes
                .iter()
                .map(|(u, t)| (u.path_and_query(), *t))
                .collect();
            self.alternations(host, &urls, Anchor::Url, &mut bans);
            self.alternations(host, &prefixes, Anchor::Prefix, &mut bans);
        }
        // Tags are not per host: a site domain, if set, still keeps the bans to its objects.
        self.alternations(self.site_domain.as_deref(), &tags, Anchor::Token, &mut bans);
        (bans, other)
    }

    /// Purge everything: of the site domain's host if one is set, else the whole cache.
    fn everything(&self) -> Ban {
        let condition = match &self.site_domain {
            Some(host) => Condition {
                field: self.host_field(),
                operator: "~",
                argument: host_regex(host),
            },
            // Tests only the object, so the lurker can clean it up.
            None => Condition {
                field: "obj.status".to_owned(),
                operator: "!=",
                argument: "0".to_owned(),
            },
        };
        Ban {
            conditions: vec![condition],
            targets: vec![Target::Everything],
        }
    }

    fn alternations(
        &self,
        host: Option<&str>,
        items: &[(&str, &Target)],
        anchor: Anchor,
        bans: &mut Vec<Ban>,
    ) {
        let mut pieces: Vec<String> = Vec::new();
        let mut targets = Vec::new();
        let mut length = 0;
        let overhead = anchor.overhead();
        for (text, target) in items {
            let mut piece = String::new();
            push_regex_literal(&mut piece, text);
            if !pieces.is_empty() && length + 1 + piece.len() + overhead > self.max_length {
                bans.push(self.ban(host, &pieces, anchor, std::mem::take(&mut targets)));
                pieces.clear();
                length = 0;
            }
            length += piece.len() + usize::from(!pieces.is_empty());
            pieces.push(piece);
            targets.push((*target).clone());
        }
        if !pieces.is_empty() {
            bans.push(self.ban(host, &pieces, anchor, targets));
        }
    }

    fn ban(
        &self,
        host: Option<&str>,
        pieces: &[String],
        anchor: Anchor,
        targets: Vec<Target>,
    ) -> Ban {
        let mut regex = String::from(anchor.start());
        if pieces.len() == 1 {
            regex.push_str(&pieces[0]);
        } else {
            regex.push_str("(?:");
            regex.push_str(&pieces.join("|"));
            regex.push(')');
        }
        regex.push_str(anchor.end());
        let mut conditions = Vec::with_capacity(2);
        if let Some(host) = host {
            conditions.push(Condition {
                field: self.host_field(),
                operator: "~",
                argument: host_regex(host),
            });
        }
        let field = match (anchor, &self.tag_header) {
            (Anchor::Token, Some(header)) => format!("obj.http.{header}"),
            _ => self.url_field(),
        };
        conditions.push(Condition {
            field,
            operator: "~",
            argument: regex,
        });
        Ban {
            conditions,
            targets,
        }
    }
}

/// How an alternation is anchored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Anchor {
    /// The whole URL: `^(?:...)$`.
    Url,
    /// The start of the URL: `^(?:...)`.
    Prefix,
    /// A whole token of a list separated by spaces or commas, so that `post:1` never matches
    /// `post:10` or `xpost:1`. The separator class is written `\x20` and `,`: a ban argument
    /// holds no raw space.
    Token,
}

impl Anchor {
    fn start(self) -> &'static str {
        match self {
            Self::Url | Self::Prefix => "^",
            Self::Token => r"(?:^|[\x20,])",
        }
    }

    fn end(self) -> &'static str {
        match self {
            Self::Url => "$",
            Self::Prefix => "",
            Self::Token => r"(?:[\x20,]|$)",
        }
    }

    /// The bytes an alternation adds around its pieces.
    fn overhead(self) -> usize {
        self.start().len() + "(?:)".len() + self.end().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn builder() -> BanBuilder {
        BanBuilder {
            style: BanStyle::ReqUrl,
            url_header: "x-url".into(),
            host_header: "x-host".into(),
            site_domain: None,
            max_length: 8000,
            tag_header: None,
        }
    }

    fn urls(list: &[&str]) -> Vec<Target> {
        list.iter().map(|u| Target::url(u).unwrap()).collect()
    }

    #[test]
    fn one_anchored_alternation_per_batch() {
        let (bans, other) = builder().bans(&urls(&["/a", "/b?x=1", "/c.d(e)+"]));
        assert!(other.is_empty());
        assert_eq!(bans.len(), 1);
        assert_eq!(
            bans[0].expression(),
            r"req.url ~ ^(?:/a|/b\?x=1|/c\.d\(e\)\+)$"
        );
        assert_eq!(
            bans[0].cli_command(),
            r#"ban req.url ~ "^(?:/a|/b\\?x=1|/c\\.d\\(e\\)\\+)$""#
        );
    }

    #[test]
    fn hosts_group_and_lurker_style() {
        let mut b = builder();
        b.style = BanStyle::Lurker;
        b.site_domain = Some("example.com".into());
        let (bans, _) = b.bans(&urls(&["/a", "https://other.org:8443/b", "/c"]));
        let exprs: Vec<String> = bans.iter().map(Ban::expression).collect();
        assert_eq!(
            exprs,
            [
                r"obj.http.x-host ~ ^(?i)example\.com(:[0-9]+)?$ && obj.http.x-url ~ ^(?:/a|/c)$",
                r"obj.http.x-host ~ ^(?i)other\.org:8443$ && obj.http.x-url ~ ^/b$",
            ]
        );
    }

    #[test]
    fn prefixes_and_everything() {
        let batch = vec![
            Target::prefix("/blog/").unwrap(),
            Target::Everything,
            Target::url("/x").unwrap(),
        ];
        let (bans, _) = builder().bans(&batch);
        let exprs: Vec<String> = bans.iter().map(Ban::expression).collect();
        assert_eq!(
            exprs,
            ["obj.status != 0", "req.url ~ ^/x$", "req.url ~ ^/blog/"]
        );
    }

    #[test]
    fn long_batches_split_under_the_limit() {
        let mut b = builder();
        b.max_length = 256;
        let batch: Vec<Target> = (0..100)
            .map(|i| Target::url(&format!("/page/{i:04}")).unwrap())
            .collect();
        let (bans, _) = b.bans(&batch);
        assert!(bans.len() > 1);
        let covered: usize = bans.iter().map(|b| b.targets.len()).sum();
        assert_eq!(covered, 100);
        for ban in &bans {
            assert!(
                ban.conditions[0].argument.len() <= 256,
                "{}",
                ban.expression()
            );
        }
    }

    #[test]
    fn quotes_backslashes_and_controls_never_reach_the_cli_raw() {
        let mut s = String::new();
        push_regex_literal(&mut s, "/a b\"c\\d\ne\u{e9}");
        assert_eq!(s, r"/a\x20b\x22c\x5cd\x0ae\xc3\xa9");
        let ban = Ban {
            conditions: vec![Condition {
                field: "req.url".into(),
                operator: "~",
                argument: s,
            }],
            targets: vec![],
        };
        assert_eq!(
            ban.cli_command(),
            r#"ban req.url ~ "/a\\x20b\\x22c\\x5cd\\x0ae\\xc3\\xa9""#
        );
    }

    /// Decodes a CLI argument the way varnishd's `VAV_Parse` does (quoted, backslash
    /// escapes), to check that quoting round-trips.
    fn cli_decode(quoted: &str) -> Option<String> {
        let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = Vec::new();
        let bytes = inner.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => return None,
                b'\\' => {
                    match *bytes.get(i + 1)? {
                        b'\\' => out.push(b'\\'),
                        b'"' => out.push(b'"'),
                        b'x' => {
                            let hex = inner.get(i + 2..i + 4)?;
                            out.push(u8::from_str_radix(hex, 16).ok()?);
                            i += 2;
                        }
                        _ => return None,
                    }
                    i += 2;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).ok()
    }

    /// Matches `text` against the escaped regex with a tiny interpreter of the only
    /// constructs `push_regex_literal` emits (literal bytes, `\` + punctuation, `\xHH`).
    fn literal_of(regex: &str) -> Option<Vec<u8>> {
        let b = regex.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' {
                if *b.get(i + 1)? == b'x' {
                    out.push(u8::from_str_radix(regex.get(i + 2..i + 4)?, 16).ok()?);
                    i += 4;
                } else {
                    let c = *b.get(i + 1)?;
                    if c.is_ascii_alphanumeric() {
                        return None;
                    }
                    out.push(c);
                    i += 2;
                }
            } else {
                if b"^$.|?*+()[]{}\\\" \n".contains(&b[i]) {
                    return None;
                }
                out.push(b[i]);
                i += 1;
            }
        }
        Some(out)
    }

    fn tag_builder() -> BanBuilder {
        let mut b = builder();
        b.style = BanStyle::Lurker;
        b.tag_header = Some("xkey".into());
        b
    }

    fn tags(list: &[&str]) -> Vec<Target> {
        list.iter().map(|t| Target::tag(t).unwrap()).collect()
    }

    #[test]
    fn tags_become_one_whole_token_alternation_on_the_tag_header() {
        let (bans, other) = tag_builder().bans(&tags(&["post:1", "posts", "a.b*(c)|$"]));
        assert!(other.is_empty());
        let exprs: Vec<String> = bans.iter().map(Ban::expression).collect();
        assert_eq!(
            exprs,
            [r"obj.http.xkey ~ (?:^|[\x20,])(?:post:1|posts|a\.b\*\(c\)\|\$)(?:[\x20,]|$)"]
        );
        assert_eq!(bans[0].targets.len(), 3);
    }

    #[test]
    fn tags_without_a_tag_header_are_returned_unbanned() {
        let (bans, other) = builder().bans(&tags(&["post:1"]));
        assert!(bans.is_empty());
        assert_eq!(other, tags(&["post:1"]));
    }

    #[test]
    fn tag_bans_keep_to_the_site_domain() {
        let mut b = tag_builder();
        b.site_domain = Some("example.com".into());
        let (bans, _) = b.bans(&tags(&["post:1"]));
        assert_eq!(
            bans[0].expression(),
            r"obj.http.x-host ~ ^(?i)example\.com(:[0-9]+)?$ && obj.http.xkey ~ (?:^|[\x20,])post:1(?:[\x20,]|$)"
        );
    }

    proptest! {
        /// A tag ban matches a tag list exactly when the tag is one of its tokens: `post:1`
        /// never bans `post:10`, `xpost:1` or `post:1.`.
        #[test]
        fn a_tag_ban_matches_whole_tokens_only(
            wanted in proptest::collection::vec(r"[!#-+\--\[\]-~]{1,6}", 1..5),
            list in proptest::collection::vec(r"[!#-+\--\[\]-~]{1,7}", 0..8),
            comma in any::<bool>(),
        ) {
            let mut b = tag_builder();
            b.max_length = 100_000;
            let targets: Vec<Target> = wanted.iter().map(|t| Target::tag(t).unwrap()).collect();
            let (bans, _) = b.bans(&targets);
            prop_assert_eq!(bans.len(), 1);
            let regex = regex::Regex::new(&bans[0].conditions[0].argument).unwrap();
            let header = list.join(if comma { ", " } else { " " });
            let expected = list.iter().any(|t| wanted.contains(t));
            prop_assert_eq!(regex.is_match(&header), expected, "{} on {:?}", bans[0].expression(), header);
        }

        #[test]
        fn escaping_is_exact_and_cli_safe(input in "/[ -~\u{80}-\u{10ffff}\n\r\t]{0,40}") {
            let mut regex = String::new();
            push_regex_literal(&mut regex, &input);
            // The regex stands for exactly the input: no metacharacter is left unescaped.
            prop_assert_eq!(literal_of(&regex), Some(input.as_bytes().to_vec()));
            let mut quoted = String::new();
            push_cli_quoted(&mut quoted, &regex);
            // One CLI word: no whitespace or control byte, and it decodes back to the regex.
            prop_assert!(quoted.bytes().all(|b| (0x21..=0x7e).contains(&b)));
            prop_assert_eq!(cli_decode(&quoted), Some(regex));
        }

        #[test]
        fn every_url_of_a_batch_is_covered_once(paths in proptest::collection::vec("/[a-z?.()*+]{0,12}", 1..60)) {
            let mut b = builder();
            b.max_length = 256;
            let batch: Vec<Target> = paths.iter().filter_map(|p| Target::url(p).ok()).collect();
            let (bans, _) = b.bans(&batch);
            let covered: Vec<Target> = bans.iter().flat_map(|b| b.targets.clone()).collect();
            prop_assert_eq!(covered.len(), batch.len());
            for ban in &bans {
                prop_assert!(ban.conditions.last().map(|c| c.argument.len()).unwrap_or(0) <= 256);
            }
        }
    }
}
