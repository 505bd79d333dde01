//! Parsing and validation of `#[cache_purge(url = "...")]` templates.
//!
//! This is plain string processing, independent of `syn`, so it can be unit-tested directly.

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// Literal text, copied verbatim into the URL.
    Lit(String),
    /// A `{field}` placeholder.
    Field {
        /// The field name as written in the template (without any `r#`).
        name: String,
        /// Whether the placeholder comes after the first `?` (rendered as a query value rather
        /// than a path segment).
        query: bool,
    },
}

/// A parsed URL template: literal parts and placeholders, in order. Always starts with a
/// literal part (`/...` or `http(s)://...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) parts: Vec<Part>,
}

impl Template {
    /// The placeholder names, in order of appearance (with repetitions).
    pub(crate) fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field { name, .. } => Some(name.as_str()),
            Part::Lit(_) => None,
        })
    }
}

/// Parses a template, or says (in a sentence suitable for a compile error) what is wrong.
pub(crate) fn parse(template: &str) -> Result<Template, String> {
    let body_start = check_start(template)?;

    let mut parts = Vec::new();
    let mut lit = String::from(&template[..body_start]);
    let mut query = template[..body_start].contains('?');
    let mut chars = template[body_start..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at = body_start + i;
        let loc = || location(template, at);
        match c {
            '{' => {
                if chars.peek().map(|&(_, c)| c) == Some('{') {
                    return Err(format!(
                        "literal braces are not allowed in a URL template ({}); \
                         write `%7B` for `{{` and `%7D` for `}}`",
                        loc()
                    ));
                }
                let rest = &template[at + 1..];
                let Some(end) = rest
                    .find(['{', '}'])
                    .filter(|&e| rest[e..].starts_with('}'))
                else {
                    return Err(format!(
                        "unclosed `{{` in the URL template ({}); placeholders are \
                         written `{{field}}`",
                        loc()
                    ));
                };
                let raw = &rest[..end];
                let name = raw.strip_prefix("r#").unwrap_or(raw);
                if name.is_empty() {
                    return Err(format!(
                        "empty placeholder `{{}}` in the URL template ({}); write \
                         `{{field}}` with the name of a field",
                        loc()
                    ));
                }
                if !is_identifier(name) {
                    return Err(format!(
                        "`{{{raw}}}` is not a valid placeholder: a placeholder is `{{field}}` \
                         with the name of a field of the struct"
                    ));
                }
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Field {
                    name: name.to_owned(),
                    query,
                });
                // Skip the name and the closing brace.
                for _ in 0..=raw.chars().count() {
                    chars.next();
                }
            }
            '}' => {
                return Err(if chars.peek().map(|&(_, c)| c) == Some('}') {
                    format!(
                        "literal braces are not allowed in a URL template ({}); \
                         write `%7B` for `{{` and `%7D` for `}}`",
                        loc()
                    )
                } else {
                    format!("unmatched `}}` in the URL template ({})", loc())
                });
            }
            '?' => {
                query = true;
                lit.push(c);
            }
            '%' => {
                let hex = template[at + 1..]
                    .bytes()
                    .take(2)
                    .filter(u8::is_ascii_hexdigit)
                    .count();
                if hex != 2 {
                    return Err(format!(
                        "`%` in the URL template ({}) does not start a percent-escape \
                         such as `%20`; write `%25` for a literal `%`",
                        loc()
                    ));
                }
                lit.push(c);
            }
            _ => {
                check_char(c, &loc)?;
                lit.push(c);
            }
        }
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(Template { parts })
}

/// Parses a tag template (`post:{id}`), or says what is wrong. Literal text may hold visible
/// ASCII but `,`, `"`, `\\` and `%` (which a tag may not hold, or which its placeholders'
/// encoding uses); placeholders are `{field}`.
pub(crate) fn parse_tag(template: &str) -> Result<Template, String> {
    if template.is_empty() {
        return Err(
            "a tag template cannot be empty: write #[cache_purge(tag = \"post:{id}\")]".to_owned(),
        );
    }
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        match c {
            '{' => {
                let Some(end) = rest.find('}') else {
                    return Err(format!(
                        "unclosed `{{` in the tag template {template:?}; placeholders are \
                         written `{{field}}`"
                    ));
                };
                let raw = &rest[1..end];
                let name = raw.strip_prefix("r#").unwrap_or(raw);
                if !is_identifier(name) {
                    return Err(format!(
                        "`{{{raw}}}` is not a valid placeholder in the tag template \
                         {template:?}: a placeholder is `{{field}}` with the name of a field"
                    ));
                }
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Field {
                    name: name.to_owned(),
                    query: false,
                });
                rest = &rest[end + 1..];
            }
            '}' => return Err(format!("unmatched `}}` in the tag template {template:?}")),
            c if c.is_ascii_graphic() && !matches!(c, ',' | '"' | '\\' | '%') => {
                lit.push(c);
                rest = &rest[1..];
            }
            c => {
                return Err(format!(
                    "a tag may only hold visible ASCII characters other than `,`, `\"`, `\\` \
                     and `%`; {c:?} in the tag template {template:?} is not one (field values \
                     are encoded, literal text must already be valid)"
                ));
            }
        }
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    let literal_len: usize = parts
        .iter()
        .map(|p| match p {
            Part::Lit(t) => t.len(),
            Part::Field { .. } => 0,
        })
        .sum();
    if literal_len > 1024 {
        return Err("a tag is at most 1024 characters long".to_owned());
    }
    Ok(Template { parts })
}

/// Checks how the template starts and returns the byte offset where its path begins (after
/// the scheme and host of an absolute URL).
fn check_start(template: &str) -> Result<usize, String> {
    const START: &str = "a URL template must start with `/` (a path such as \"/posts/{slug}\") \
                         or with `http://` or `https://` (an absolute URL)";
    if template.starts_with("//") {
        return Err(format!(
            "{START}; `//` starts a URL without a scheme: write `https://host/...` or `/...`"
        ));
    }
    if template.starts_with('/') {
        return Ok(0);
    }
    let Some(scheme_len) = ["https://", "http://"]
        .iter()
        .find(|s| template.starts_with(*s))
        .map(|s| s.len())
    else {
        return Err(if template.starts_with('{') {
            format!(
                "{START}; a field cannot supply the start of the URL (use \
                 `#[cache_purge(resolver = path)]` for URLs computed in code)"
            )
        } else {
            format!("{START}, found {template:?}")
        });
    };
    let rest = &template[scheme_len..];
    let host_len = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = &rest[..host_len];
    if host.contains(['{', '}']) {
        return Err(
            "placeholders are only allowed in the path and query of an absolute URL template, \
             not in its host (use `#[cache_purge(resolver = path)]` to compute hosts in code)"
                .to_owned(),
        );
    }
    if host.is_empty() {
        return Err(format!(
            "the absolute URL template {template:?} has no host"
        ));
    }
    if host.contains('@') {
        return Err("credentials (`user@`) in a purge URL are not supported".to_owned());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
    {
        return Err(format!(
            "invalid host {host:?} in the URL template: a host may only hold ASCII letters, \
             digits, `-`, `.`, `:` (port) and `[]` (IPv6); write non-ASCII hosts in punycode"
        ));
    }
    Ok(scheme_len + host_len)
}

/// Rejects characters that may not appear literally in a template.
fn check_char(c: char, loc: &dyn Fn() -> String) -> Result<(), String> {
    let what = match c {
        '#' => {
            return Err(format!(
                "a URL template cannot contain `#` ({}): a fragment is never sent to \
                 the server, so it cannot be purged; write `%23` for a literal `#`",
                loc()
            ));
        }
        '"' => "`\"`".to_owned(),
        '\\' => "`\\`".to_owned(),
        ' ' => "a space".to_owned(),
        c if c.is_whitespace() => format!("whitespace (U+{:04X})", u32::from(c)),
        c if c.is_control() => format!("the control character U+{:04X}", u32::from(c)),
        _ => return Ok(()),
    };
    Err(format!(
        "a URL template cannot contain {what} ({}); percent-encode it (e.g. `%20` for \
         a space, `%22` for `\"`, `%5C` for `\\`)",
        loc()
    ))
}

/// Where the character at byte `at` is, for messages: the template's text before it.
fn location(template: &str, at: usize) -> String {
    if at == 0 {
        return "at its start".to_owned();
    }
    let before = &template[..at];
    let count = before.chars().count();
    if count <= 40 {
        format!("after `{before}`")
    } else {
        let tail: String = before.chars().skip(count - 40).collect();
        format!("after `...{tail}`")
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Part {
        Part::Lit(s.to_owned())
    }
    fn path(s: &str) -> Part {
        Part::Field {
            name: s.to_owned(),
            query: false,
        }
    }
    fn query(s: &str) -> Part {
        Part::Field {
            name: s.to_owned(),
            query: true,
        }
    }
    fn parts(s: &str) -> Vec<Part> {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}")).parts
    }
    fn err(s: &str) -> String {
        match parse(s) {
            Ok(t) => panic!("{s:?} should be rejected, parsed as {t:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn literal_only() {
        assert_eq!(parts("/"), [lit("/")]);
        assert_eq!(parts("/posts?page=1&x=%20"), [lit("/posts?page=1&x=%20")]);
        assert_eq!(parts("https://example.com"), [lit("https://example.com")]);
    }

    #[test]
    fn placeholders_in_path_and_query() {
        assert_eq!(parts("/posts/{slug}"), [lit("/posts/"), path("slug")],);
        assert_eq!(
            parts("/a/{x}{y}.html?q={z}&r={r#type}"),
            [
                lit("/a/"),
                path("x"),
                path("y"),
                lit(".html?q="),
                query("z"),
                lit("&r="),
                query("type"),
            ],
        );
        assert_eq!(parts("/search?{q}"), [lit("/search?"), query("q")],);
        assert_eq!(
            parts("https://example.com:8080/p/{id}?{a}"),
            [
                lit("https://example.com:8080/p/"),
                path("id"),
                lit("?"),
                query("a")
            ],
        );
        assert_eq!(
            parts("https://example.com?x={id}"),
            [lit("https://example.com?x="), query("id")],
        );
        assert_eq!(parts("/é/{ñame}"), [lit("/é/"), path("ñame")]);
        let t = parse("/{a}/{b}/{a}").unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), ["a", "b", "a"]);
    }

    #[test]
    fn bad_starts() {
        for s in ["", "posts/{id}", "ftp://x/", "HTTP://x/", " /a"] {
            assert!(err(s).contains("must start with `/`"), "{s:?}");
        }
        assert!(err("{base}/x").contains("resolver"));
        assert!(err("//cdn.example.com/x").contains("without a scheme"));
        assert!(err("https://{tenant}.example.com/").contains("not in its host"));
        assert!(err("https:///x").contains("no host"));
        assert!(err("https://user@h/").contains("credentials"));
        assert!(err("https://exämple.com/").contains("punycode"));
    }

    #[test]
    fn bad_characters() {
        assert!(err("/a b").contains("a space"));
        assert!(err("/a\tb").contains("whitespace (U+0009)"));
        assert!(err("/a\u{a0}b").contains("whitespace (U+00A0)"));
        assert!(err("/a\"b").contains("`\"`"));
        assert!(err("/a\\b").contains("`\\`"));
        assert!(err("/a\u{7}").contains("control character U+0007"));
        assert!(err("/a#top").contains("fragment"));
        assert!(err("/a%2").contains("percent-escape"));
        assert!(err("/a%zz").contains("percent-escape"));
        assert!(err("/a%").contains("percent-escape"));
    }

    #[test]
    fn errors_say_where() {
        assert!(err("/posts/{slug} x").contains("(after `/posts/{slug}`)"));
        assert!(err("/}").contains("(after `/`)"));
        let long = format!("/{}/a b", "x".repeat(50));
        assert!(err(&long).contains(&format!("(after `...{}/a`)", "x".repeat(38))));
        assert_eq!(location("/é x", 3), "after `/é`");
        assert_eq!(location("{x}", 0), "at its start");
    }

    #[test]
    fn bad_braces() {
        assert!(err("/a/{slug").contains("unclosed `{`"));
        assert!(err("/a/{sl{ug}").contains("unclosed `{`"));
        assert!(err("/a/slug}").contains("unmatched `}`"));
        assert!(err("/a/{{x}}").contains("literal braces"));
        assert!(err("/a/}}").contains("literal braces"));
        assert!(err("/a/{}").contains("empty placeholder"));
        assert!(err("/a/{a b}").contains("not a valid placeholder"));
        assert!(err("/a/{1a}").contains("not a valid placeholder"));
        assert!(err("/a/{a.b}").contains("not a valid placeholder"));
    }
}
