//! The Cloudflare backend: API v4 `POST /zones/{zone_id}/purge_cache`.
//!
//! Every kind of target, each in its own request as the API wants (one kind per request):
//!
//! | target                           | request body                                       |
//! |----------------------------------|----------------------------------------------------|
//! | URL `/a?x=1`                     | `{"files": ["https://www.example.com/a?x=1"]}`    |
//! | prefix `/blog/`                  | `{"prefixes": ["www.example.com/blog/"]}`          |
//! | prefix of a whole host (`https://cdn.example.com/`) | `{"hosts": ["cdn.example.com"]}` |
//! | tag `post-1`                     | `{"tags": ["post-1"]}`                             |
//! | everything                       | `{"purge_everything": true}`                       |
//!
//! Paths are made absolute with `site_url`; absolute URLs bring their own host. A batch with
//! [`Target::Everything`](crate::Target::Everything) in it sends only `purge_everything`, which purges the rest too.
//!
//! # Limits (developers.cloudflare.com/cache/how-to/purge-cache/, "Purge limits")
//!
//! - Items per request: 100 tags, hosts or prefixes, 100 URLs (500 on Enterprise); a batch is
//!   split into as many requests as that takes ([`CloudflarePlan`](settings::CloudflarePlan)). Some accounts still see
//!   the older limit of 30 URLs per request (cloudflare/cloudflare-docs#21338):
//!   `urls_per_request = 30` then.
//! - Requests: a token bucket per account (Free 5 per minute with a bucket of 25, Pro 5 per
//!   second / 25, Business 10 per second / 50, Enterprise 50 per second / 500), kept on this
//!   side by a [`RateLimit`](crate::backend::RateLimit) with the same figures (less a small
//!   reserve against network jitter, [`RateLimit::within`](crate::backend::RateLimit::within)), so a burst of purges waits for tokens
//!   instead of drawing 429s; and URLs per second (800, 1500, 1500, 3000, a moving
//!   average), kept by a second bucket of one second's worth.
//! - A 429 that comes anyway (another client of the same account) pauses the bucket for its
//!   `Retry-After` and fails the request's targets as [`Cause::RateLimited`](crate::backend::Cause::RateLimited): the engine
//!   retries them no sooner than that.
//!
//! # Errors
//!
//! Cloudflare answers errors as `{"success": false, "errors": [{"code": ..., "message": ...}]}`;
//! the error quotes them and names what is wrong:
//!
//! - the token is refused (`10000 Authentication error`, `9109`, `6003`/`6111`, HTTP 401/403):
//!   [`Cause::Authentication`](crate::backend::Cause::Authentication), permanent;
//! - the zone ID is not a zone (`7003 Could not route to /zones/...`, HTTP 404):
//!   [`Cause::Misconfigured`](crate::backend::Cause::Misconfigured), permanent;
//! - a request Cloudflare refuses (400: too many items for the plan, a bad URL):
//!   [`Cause::Refused`](crate::backend::Cause::Refused), permanent, with Cloudflare's message;
//! - 5xx: [`Cause::Status`](crate::backend::Cause::Status), transient; no answer: unreachable, timeout...

#[cfg(feature = "cloudflare")]
mod backend;
pub mod settings;

#[cfg(feature = "cloudflare")]
pub use backend::{CloudflareBackend, CloudflareZone};
