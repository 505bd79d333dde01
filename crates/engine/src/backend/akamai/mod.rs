//! The Akamai backend: Fast Purge API v3, `POST /ccu/v3/{action}/{type}/{network}` with
//! `{"objects": [...]}`, signed with EdgeGrid (EG1-HMAC-SHA256).
//!
//! | target         | request (techdocs.akamai.com/purge-cache/reference)                       |
//! |----------------|----------------------------------------------------------------------------|
//! | URL `/a?x=1`   | `POST /ccu/v3/invalidate/url/production` `{"objects": ["https://www.example.com/a?x=1"]}` |
//! | tag `post-1`   | `POST /ccu/v3/invalidate/tag/production` `{"objects": ["post-1"]}` (cache tags, the `Edge-Cache-Tag` response header) |
//! | everything     | `POST /ccu/v3/invalidate/cpcode/production` `{"objects": [12345]}`: the `cp_codes` setting; without it, unsupported |
//!
//! `action = "delete"` sends `/ccu/v3/delete/...` instead (remove rather than mark stale);
//! `network = "staging"` ends the path with `/staging`. One object type per request, as the
//! API wants. Fast Purge has no prefix purge: prefixes are unsupported (counted so by the
//! engine, never widened), and so is "everything" without `cp_codes`. A tag is purged in
//! [`Tag::akamai_form`](crate::target::Tag::akamai_form): itself when it is at most 128 of
//! the characters Akamai accepts, else the stand-in `CacheTagsLayer`'s
//! `TagHeader::edge_cache_tag()` writes for it (`post:1` is `post_1~<digest>`: Akamai
//! refuses `:`), so the purge names what the page carries.
//!
//! # Limits (techdocs.akamai.com/purge-cache/reference/rate-limiting)
//!
//! - The body of a request is at most 50,000 bytes (a larger one is answered 413): objects
//!   are packed into requests by their serialized size, so no body is ever larger, whatever
//!   the length of the URLs. One object that alone would not fit is a permanent failure of
//!   its own.
//! - A token bucket per account, shared by all its API clients: 100 requests, refilled at
//!   50 per second; and one per object type, each object of a request taking one token:
//!   URLs 10,000 refilled at 200 per second, CP codes 300 at 30 per minute, tags 5,000 at
//!   500 per minute ([`limits`]). A request is refused with 429 when either bucket lacks
//!   the tokens, and consumes none then.
//! - This side keeps the same buckets ([`RateLimit`](crate::backend::RateLimit), less a
//!   small reserve), and follows the answers: every answer carries `X-Ratelimit-Remaining`
//!   and `X-Ratelimit-Remaining-Objects`, and when they say fewer tokens are left than this
//!   side thought (another client of the account purges too), the buckets are lowered to
//!   them, so the next request waits for the refill instead of drawing a 429.
//! - A 429 that comes anyway pauses the buckets for its wait and fails the request's targets
//!   as [`Cause::RateLimited`](crate::backend::Cause::RateLimited): the wait is
//!   `Retry-After` when the answer has one, else the time the bucket needs to refill what the
//!   request lacks (from the `X-Ratelimit-*` headers or the body's `rateLimitRemaining` and
//!   `rateLimitCurrentRequestSize`), else the five seconds the 429 page of the reference
//!   says to wait.
//!
//! # Errors
//!
//! Fast Purge answers errors as `application/problem+json` (`type`, `title`, `detail`,
//! `httpStatus` or `status`, `supportId`), quoted in the error with the support ID:
//!
//! - 401 from the EdgeGrid gateway (a bad client token, access token or signature, which is
//!   a wrong `client_secret`; a timestamp out of range, which is this clock; a nonce seen
//!   before): [`Cause::Authentication`](crate::backend::Cause::Authentication), permanent,
//!   naming the setting to check;
//! - 403 (the API client lacks the CCU APIs service, or the URL, tag or CP code is not the
//!   account's): [`Cause::Authentication`](crate::backend::Cause::Authentication);
//! - 413 (a body over 50,000 bytes, which this side never sends) and 400 (a malformed URL,
//!   a bad tag): [`Cause::Refused`](crate::backend::Cause::Refused), permanent;
//! - 429: [`Cause::RateLimited`](crate::backend::Cause::RateLimited), as above; 5xx:
//!   transient; no answer: unreachable, timeout...
//!
//! # Authentication
//!
//! The EdgeGrid signing ([`edgegrid`] module) is written here with `hmac`, `sha2` and
//! `base64`: the EdgeGrid crates on crates.io are `libedgegrid` (2016, curl, libsodium and
//! `rustc-serialize`, unmaintained) and `edgerc` (three releases in September 2023, a few
//! hundred downloads a month, no updates since), neither well-kept enough to carry
//! credentials, and the scheme is short. It is checked against the test vectors of
//! Akamai's own edgegrid-python.

#[cfg(feature = "akamai")]
mod backend;
#[cfg(feature = "akamai")]
pub mod edgegrid;
pub mod settings;

#[cfg(feature = "akamai")]
pub use backend::{AkamaiBackend, AkamaiCheck};

/// The documented limits of Fast Purge (techdocs.akamai.com/purge-cache/reference/
/// rate-limiting), per account.
pub mod limits {
    /// The largest request body, in bytes ("Purge requests have a body size limit of 50KB";
    /// the Fast Purge guide: "no more than about 50,000 bytes").
    pub const MAX_BODY_BYTES: usize = 50_000;
    /// Request tokens refilled per second.
    pub const REQUESTS_PER_SECOND: f64 = 50.0;
    /// The request bucket.
    pub const REQUEST_BURST: u32 = 100;
    /// URL (and ARL) tokens refilled per second.
    pub const URLS_PER_SECOND: f64 = 200.0;
    /// The URL bucket.
    pub const URL_BURST: u32 = 10_000;
    /// Cache tag tokens refilled per second (500 per minute).
    pub const TAGS_PER_SECOND: f64 = 500.0 / 60.0;
    /// The cache tag bucket.
    pub const TAG_BURST: u32 = 5_000;
    /// CP code tokens refilled per second (30 per minute).
    pub const CP_CODES_PER_SECOND: f64 = 30.0 / 60.0;
    /// The CP code bucket.
    pub const CP_CODE_BURST: u32 = 300;
    /// The longest cache tag (`Edge-Cache-Tag` values are at most 128 characters).
    pub const MAX_TAG_LEN: usize = 128;
    /// What the reference's 429 page says to wait when nothing else says how long.
    pub const DEFAULT_429_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
}
