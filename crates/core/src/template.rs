//! Rendering of `#[cache_purge(url = "...")]` templates: how a field value becomes part of a URL.
//!
//! The derive macro calls these; they are public so that hand-written [`PurgeTargets`]
//! impls can encode values the same way.
//!
//! ```
//! use cache_purge_hooks_core::template::{push_path_segment, push_query_value};
//!
//! let mut url = String::from("/posts/");
//! push_path_segment(&mut url, &"a/b c?#é");
//! assert_eq!(url, "/posts/a%2Fb%20c%3F%23%C3%A9");
//!
//! let mut url = String::from("/search?q=");
//! push_query_value(&mut url, &"rust & tea=1");
//! assert_eq!(url, "/search?q=rust%20%26%20tea%3D1");
//! ```
//!
//! [`PurgeTargets`]: crate::PurgeTargets

use std::fmt::{self, Display, Write as _};

use crate::target::push_escape;

/// Appends `value` as one path segment: everything except RFC 3986 unreserved characters,
/// sub-delimiters, `:` and `@` is percent-encoded, so `/`, `?`, `#`, `%`, spaces and non-ASCII
/// can never change the URL's structure. A value of `.` or `..` has its dots encoded, so it
/// cannot walk up the path.
pub fn push_path_segment(out: &mut String, value: &dyn Display) {
    let start = out.len();
    encode_into(out, value, &SEGMENT_KEEPS);
    let rendered = &out[start..];
    if rendered == "." || rendered == ".." {
        let dots = rendered.len();
        out.truncate(start);
        for _ in 0..dots {
            out.push_str("%2E");
        }
    }
}

/// Appends `value` as a query-string value: like [`push_path_segment`] but also encoding
/// `&`, `=`, `+` and `;`, so a value can never add a parameter.
pub fn push_query_value(out: &mut String, value: &dyn Display) {
    encode_into(out, value, &QUERY_KEEPS);
}

/// Appends `value` as part of a tag (`#[cache_purge(tag = "post:{id}")]`): visible ASCII is
/// kept but for `%` and the characters a tag may not hold (`,`, `"`, `\\`), which are
/// percent-encoded like everything else (spaces, controls, non-ASCII), so a value can never
/// split one tag into two or break the header a backend reads tags from.
///
/// ```
/// let mut tag = String::from("post:");
/// cache_purge_hooks_core::template::push_tag_value(&mut tag, &"a b,c\"é");
/// assert_eq!(tag, "post:a%20b%2Cc%22%C3%A9");
/// ```
pub fn push_tag_value(out: &mut String, value: &dyn Display) {
    encode_into(out, value, &TAG_KEEPS);
}

const fn tag_byte_allowed(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b',' | b'"' | b'\\' | b'%')
}

const fn segment_byte_allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

const fn query_byte_allowed(b: u8) -> bool {
    segment_byte_allowed(b) && !matches!(b, b'&' | b'=' | b'+' | b';') || matches!(b, b'/' | b'?')
}

/// The bytes a set keeps as they are, one look-up per byte (a value is rendered on every
/// save). Only ASCII bytes are ever kept.
macro_rules! keeps {
    ($allowed:ident) => {{
        let mut table = [false; 256];
        let mut b = 0;
        while b < 128 {
            table[b] = $allowed(b as u8);
            b += 1;
        }
        table
    }};
}

static SEGMENT_KEEPS: [bool; 256] = keeps!(segment_byte_allowed);
static QUERY_KEEPS: [bool; 256] = keeps!(query_byte_allowed);
static TAG_KEEPS: [bool; 256] = keeps!(tag_byte_allowed);

/// A `fmt::Write` that percent-encodes as it goes, so values are rendered without an
/// intermediate `String`.
struct Encoder<'a> {
    out: &'a mut String,
    keeps: &'static [bool; 256],
}

impl fmt::Write for Encoder<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        // Runs of kept bytes are copied whole; what is not kept is encoded a whole character
        // at a time. Kept bytes are ASCII, so every cut below falls on a character boundary.
        while let Some(i) = rest.bytes().position(|b| !self.keeps[usize::from(b)]) {
            let (run, tail) = rest.split_at(i);
            self.out.push_str(run);
            let len = tail.chars().next().map_or(1, char::len_utf8);
            for &b in &tail.as_bytes()[..len] {
                push_escape(self.out, b);
            }
            rest = &tail[len..];
        }
        self.out.push_str(rest);
        Ok(())
    }
}

fn encode_into(out: &mut String, value: &dyn Display, keeps: &'static [bool; 256]) {
    let mut enc = Encoder { out, keeps };
    // Writing into a String cannot fail; a Display impl that returns an error leaves what it
    // wrote so far, which is the best rendering available.
    let _ = write!(enc, "{value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_cannot_walk_up() {
        for (v, want) in [(".", "%2E"), ("..", "%2E%2E"), ("...", "..."), (".a", ".a")] {
            let mut s = String::new();
            push_path_segment(&mut s, &v);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn numbers_and_plain_slugs_are_untouched() {
        let mut s = String::from("/p/");
        push_path_segment(&mut s, &42);
        s.push('/');
        push_path_segment(&mut s, &"hello-world_1.2~x");
        assert_eq!(s, "/p/42/hello-world_1.2~x");
    }

    #[test]
    fn tag_values_are_one_valid_tag() {
        let mut s = String::from("post:");
        push_tag_value(&mut s, &"x, y\n\"%");
        assert_eq!(s, "post:x%2C%20y%0A%22%25");
        assert!(crate::Tag::parse(&s).is_ok());
    }

    proptest::proptest! {
        /// Runs copied whole and characters encoded whole give what encoding byte by byte
        /// gives, for any value (non-ASCII, controls and `%` included).
        #[test]
        fn every_value_is_encoded_as_byte_by_byte(value in "\\PC{0,24}|[\\x00-\\x7f]{0,24}") {
            for (push, allowed) in [
                (push_path_segment as fn(&mut String, &dyn Display), segment_byte_allowed as fn(u8) -> bool),
                (push_query_value, query_byte_allowed),
                (push_tag_value, tag_byte_allowed),
            ] {
                let mut want = String::from("/x/");
                for &b in value.as_bytes() {
                    if allowed(b) {
                        want.push(char::from(b));
                    } else {
                        push_escape(&mut want, b);
                    }
                }
                let mut got = String::from("/x/");
                push(&mut got, &value);
                if want == "/x/." || want == "/x/.." {
                    continue; // the dot segments, encoded on purpose (dot_segments_cannot_walk_up)
                }
                proptest::prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn query_values_cannot_add_parameters() {
        let mut s = String::new();
        push_query_value(&mut s, &"a&b=c+d;e/f?g");
        assert_eq!(s, "a%26b%3Dc%2Bd%3Be/f?g");
    }
}
