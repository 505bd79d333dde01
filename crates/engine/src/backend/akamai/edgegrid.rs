//! EdgeGrid request signing, EG1-HMAC-SHA256 (techdocs.akamai.com/developer/docs/
//! authenticate-with-edgegrid; the older developer.akamai.com/introduction/Client_Auth.html).
//!
//! ```text
//! signing key   = base64(HMAC-SHA256(key = client_secret, timestamp))
//! content hash  = base64(SHA-256(body, at most max_body bytes)) for a POST with a body, else ""
//! auth prefix   = "EG1-HMAC-SHA256 client_token=…;access_token=…;timestamp=…;nonce=…;"
//! data to sign  = method \t scheme \t host \t path?query \t canonical headers \t content hash \t auth prefix
//! Authorization = auth prefix + "signature=" + base64(HMAC-SHA256(key = signing key, data to sign))
//! ```
//!
//! The timestamp is UTC, `yyyyMMddTHH:mm:ss+0000`; the nonce is unique per request. Fast Purge
//! signs no headers, so the canonical headers are always empty here.
//!
//! ```
//! use cache_purge_hooks_engine::backend::akamai::edgegrid::{Signer, timestamp};
//!
//! let signer = Signer::new("akab-client", "akab-access", "c2VjcmV0");
//! let auth = signer.authorization(
//!     "POST", "https", "akab-x.purge.akamaiapis.net", "/ccu/v3/invalidate/url/production",
//!     br#"{"objects":["https://www.example.com/"]}"#, "20260101T00:00:00+0000", "nonce-1",
//! );
//! assert!(auth.starts_with("EG1-HMAC-SHA256 client_token=akab-client;access_token=akab-access;"));
//! assert!(auth.contains(";signature="));
//! assert_eq!(timestamp(std::time::UNIX_EPOCH), "19700101T00:00:00+0000");
//! ```

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The most of a POST body the content hash covers (EdgeGrid's `max_body`, 131,072 bytes
/// for Akamai's APIs).
pub const MAX_BODY: usize = 131_072;

/// Signs requests with one API client's credentials.
#[derive(Clone)]
pub struct Signer {
    client_token: String,
    access_token: String,
    client_secret: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

fn hmac_base64(key: &[u8], data: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(data);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// `base64(SHA-256(body))` of at most `max_body` bytes of a POST body; empty otherwise.
pub fn content_hash(method: &str, body: &[u8], max_body: usize) -> String {
    if !method.eq_ignore_ascii_case("POST") || body.is_empty() {
        return String::new();
    }
    let body = &body[..body.len().min(max_body)];
    STANDARD.encode(Sha256::digest(body))
}

/// The signing key of a timestamp: `base64(HMAC-SHA256(client_secret, timestamp))`.
pub fn signing_key(client_secret: &str, timestamp: &str) -> String {
    hmac_base64(client_secret.as_bytes(), timestamp.as_bytes())
}

/// The signature of a request, given the `Authorization` value up to and with the `nonce=…;`
/// (`auth_prefix`), and its content hash. Shared by the client and by fakes that verify it.
#[allow(clippy::too_many_arguments)]
pub fn signature(
    client_secret: &str,
    timestamp: &str,
    method: &str,
    scheme: &str,
    host: &str,
    path_and_query: &str,
    content_hash: &str,
    auth_prefix: &str,
) -> String {
    let data = [
        method.to_ascii_uppercase().as_str(),
        scheme,
        host,
        path_and_query,
        "",
        content_hash,
        auth_prefix,
    ]
    .join("\t");
    hmac_base64(
        signing_key(client_secret, timestamp).as_bytes(),
        data.as_bytes(),
    )
}

impl Signer {
    /// A signer of these credentials.
    pub fn new(client_token: &str, access_token: &str, client_secret: &str) -> Self {
        Self {
            client_token: client_token.to_owned(),
            access_token: access_token.to_owned(),
            client_secret: client_secret.to_owned(),
        }
    }

    /// The `Authorization` header value of a request at `timestamp` with `nonce`.
    #[allow(clippy::too_many_arguments)]
    pub fn authorization(
        &self,
        method: &str,
        scheme: &str,
        host: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp: &str,
        nonce: &str,
    ) -> String {
        let prefix = format!(
            "EG1-HMAC-SHA256 client_token={};access_token={};timestamp={timestamp};nonce={nonce};",
            self.client_token, self.access_token
        );
        let hash = content_hash(method, body, MAX_BODY);
        let signature = signature(
            &self.client_secret,
            timestamp,
            method,
            scheme,
            host,
            path_and_query,
            &hash,
            &prefix,
        );
        format!("{prefix}signature={signature}")
    }
}

/// `time` in EdgeGrid's form, `yyyyMMddTHH:mm:ss+0000` (UTC).
pub fn timestamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}:{:02}:{:02}+0000",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The time of an EdgeGrid timestamp, if it is one.
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 22 || b[8] != b'T' || b[11] != b':' || b[14] != b':' || &text[17..] != "+0000" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(12..14)?, num(15..17)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo, d);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + s;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// A nonce: 128 random bits as a UUID-shaped string (unique per request is all it needs).
pub fn nonce() -> String {
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

// Howard Hinnant's civil-date algorithms (the proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // The credentials, timestamp, nonce and expected values below are the published test
    // data of Akamai's edgegrid-python (akamai/AkamaiOPEN-edgegrid-python,
    // akamai/edgegrid/test/testdata.json); only the values are reused.
    const HOST: &str = "akaa-baseurl-xxxxxxxxxxx-xxxxxxxxxxxxx.luna.akamaiapis.net";
    const SECRET: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=";
    const TIMESTAMP: &str = "20140321T19:34:21+0000";
    const NONCE: &str = "nonce-xx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

    fn signer() -> Signer {
        Signer::new(
            "akab-client-token-xxx-xxxxxxxxxxxxxxxx",
            "akab-access-token-xxx-xxxxxxxxxxxxxxxx",
            SECRET,
        )
    }

    fn expected(signature: &str) -> String {
        format!(
            "EG1-HMAC-SHA256 client_token=akab-client-token-xxx-xxxxxxxxxxxxxxxx;\
             access_token=akab-access-token-xxx-xxxxxxxxxxxxxxxx;timestamp={TIMESTAMP};\
             nonce={NONCE};signature={signature}"
        )
    }

    #[test]
    fn signatures_match_akamais_published_test_vectors() {
        assert_eq!(
            signing_key(SECRET, TIMESTAMP),
            "znsRMDBRqTXGJ7Ojip3/h2FGPu3LuoMYWgv9PKEnE/o="
        );
        let s = signer();
        let sign = |method, path, body: &[u8]| {
            s.authorization(method, "https", HOST, path, body, TIMESTAMP, NONCE)
        };
        assert_eq!(
            sign("GET", "/", b""),
            expected("tL+y4hxyHxgWVD30X3pWnGKHcPzmrIF+LThiAOhMxYU=")
        );
        assert_eq!(
            sign("GET", "/testapi/v1/t1?p1=1&p2=2", b""),
            expected("hKDH1UlnQySSHjvIcZpDMbQHihTQ0XyVAKZaApabdeA=")
        );
        assert_eq!(
            sign(
                "POST",
                "/testapi/v1/t3",
                b"datadatadatadatadatadatadatadata"
            ),
            expected("hXm4iCxtpN22m4cbZb4lVLW5rhX8Ca82vCFqXzSTPe4=")
        );
        assert_eq!(
            sign("POST", "/testapi/v1/t6", b""),
            expected("1gEDxeQGD5GovIkJJGcBaKnZ+VaPtrc4qBUHixjsPCQ=")
        );
    }

    #[test]
    fn the_content_hash_covers_at_most_max_body_bytes_of_a_post() {
        let long = vec![b'd'; 3000];
        assert_eq!(
            content_hash("POST", &long, 2048),
            content_hash("POST", &long[..2048], 2048)
        );
        assert_ne!(
            content_hash("POST", &long, 4096),
            content_hash("POST", &long[..2048], 4096)
        );
        assert_eq!(content_hash("PUT", b"x", 2048), "");
    }

    #[test]
    fn timestamps_are_utc_in_edgegrids_form_and_parse_back() {
        let t = parse_timestamp(TIMESTAMP).unwrap();
        assert_eq!(timestamp(t), TIMESTAMP);
        for secs in [0u64, 951_782_400, 1_709_164_800, 4_102_444_799] {
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            assert_eq!(parse_timestamp(&timestamp(t)), Some(t), "{secs}");
        }
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400)),
            "20000229T00:00:00+0000"
        );
        assert!(parse_timestamp("20140321T19:34:21-0700").is_none());
        assert!(parse_timestamp("2014-03-21").is_none());
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 36);
    }
}
