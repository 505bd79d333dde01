//! The Fastly backend: URL purges, surrogate-key batch purges and purge-all, hard or soft.
//!
//! | target         | request (Fastly API reference, "Purging")                                   |
//! |----------------|------------------------------------------------------------------------------|
//! | URL `/a?x=1`   | `PURGE https://www.example.com/a?x=1`, one per URL                          |
//! | tags           | `POST /service/{service_id}/purge` with `{"surrogate_keys": [...]}`, up to 256 keys per request |
//! | everything     | `POST /service/{service_id}/purge_all` (always hard: Fastly has no soft purge-all) |
//!
//! Every request carries the token as `Fastly-Key`; with `soft = true`, URL and key purges
//! carry `Fastly-Soft-Purge: 1` (objects are marked stale rather than removed). Paths are
//! made absolute with `site_url`. Fastly has no prefix purge: prefix targets are not
//! accepted (the engine counts them as unsupported, never widened). A batch with
//! [`Target::Everything`](crate::Target::Everything) sends only the purge-all.
//!
//! # Errors
//!
//! Fastly answers errors as `{"msg": ..., "detail": ...}`, quoted in the error:
//!
//! - 401 (the token is missing or invalid) and 403 (it lacks the `purge_select` or
//!   `purge_all` scope, or the service): [`Cause::Authentication`](crate::backend::Cause::Authentication), permanent;
//! - 404 on the service's endpoints (no such service): [`Cause::Misconfigured`](crate::backend::Cause::Misconfigured), permanent;
//! - 400 (more than 256 keys, a bad key): [`Cause::Refused`](crate::backend::Cause::Refused), permanent;
//! - 429: [`Cause::RateLimited`](crate::backend::Cause::RateLimited) with `Retry-After` (or `Fastly-RateLimit-Reset`);
//! - 5xx: transient.
//!
//! Fastly documents no rate limit for purges; `rate` (and `burst`) set a client-side
//! [`RateLimit`](crate::backend::RateLimit) when an account needs one.

#[cfg(feature = "fastly")]
mod backend;
pub mod settings;

#[cfg(feature = "fastly")]
pub use backend::{FastlyBackend, FastlyService};
