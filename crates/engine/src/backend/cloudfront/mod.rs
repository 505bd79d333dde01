//! The CloudFront backend: `CreateInvalidation` of paths, signed with SigV4.
//!
//! | target                | invalidation path (API 2020-05-31, `InvalidationBatch`)          |
//! |-----------------------|-------------------------------------------------------------------|
//! | URL `/a?x=1`          | `/a?x=1` (exactly that object; a query string is part of the path) |
//! | prefix `/blog/`       | `/blog/*` (a wildcard path)                                        |
//! | everything            | `/*` (one wildcard path, for the whole batch)                      |
//! | tag                   | not supported: CloudFront has no tag invalidation ([`Capabilities`](crate::backend::Capabilities) say so; never widened) |
//!
//! Requests go to `POST {base_url}/2020-05-31/distribution/{distribution_id}/invalidation`
//! with the `InvalidationBatch` XML (`CallerReference`, `Paths` with `Quantity` and `Items`),
//! signed with AWS Signature Version 4 (region `us-east-1`, service `cloudfront`) by the
//! `aws-sigv4` crate. CloudFront answers `201 Created` with the `Invalidation` (`Id`, `Status`
//! `InProgress`).
//!
//! Absolute URLs are invalidated by their path only when their host is in `hosts` (the hosts
//! the distribution serves); any other host fails as [`Cause::Misconfigured`](crate::backend::Cause::Misconfigured) instead of
//! invalidating the same path of the wrong site. A `*` inside a URL or prefix fails the same
//! way: CloudFront would read it as a wildcard.
//!
//! # Limits (CloudFront Developer Guide, "Concurrent invalidation request maximum")
//!
//! - Up to 3,000 individual paths in progress per distribution, and independently up to 15
//!   wildcard paths. One invalidation carries at most that many; a batch is split into
//!   invalidations within what is left of both limits.
//! - This client counts the paths of its own invalidations until it sees them `Completed`:
//!   when the limits are full it asks `GetInvalidation` about them first; what still does not
//!   fit fails as [`Cause::RateLimited`](crate::backend::Cause::RateLimited), with `retry_after` when room is expected (the
//!   oldest invalidation in progress plus the time the last one took to complete, at least
//!   `poll_interval`), and the engine retries it then. `TooManyInvalidationsInProgress` from CloudFront (other clients of the
//!   distribution) is the same cause; `Throttling` too (with its `Retry-After`, if any).
//!   `max_paths_in_progress` and `max_wildcards_in_progress` lower the share this client takes.
//!
//! # Caller references
//!
//! Each invalidation has a new, unique `CallerReference` (`cache-purge-hooks-<ms>-<pid>-<n>-<hash>`),
//! the retry of a request whose outcome is unknown (no answer, a 5xx, a `wait` that timed out)
//! too: CloudFront may then hold two invalidations of the same paths (a duplicate, at the
//! price of one more), never an invalidation made before a later save of those paths that a
//! reused reference would have handed back (a stale page).
//!
//! # Waiting
//!
//! With `wait = true` the purge is done only once `GetInvalidation` says `Completed`
//! (polled every `poll_interval`, at most `wait_timeout`, then [`Cause::Timeout`](crate::backend::Cause::Timeout)).
//!
//! # Errors
//!
//! CloudFront answers errors as `<ErrorResponse><Error><Type>Sender</Type><Code>...</Code>
//! <Message>...</Message></Error></ErrorResponse>`; the error quotes them and names what is wrong:
//!
//! - `InvalidClientTokenId`, `SignatureDoesNotMatch`, `AccessDenied` (403):
//!   [`Cause::Authentication`](crate::backend::Cause::Authentication), permanent;
//! - `NoSuchDistribution` (404): [`Cause::Misconfigured`](crate::backend::Cause::Misconfigured), permanent, naming the ID;
//! - `TooManyInvalidationsInProgress`, `Throttling` (400): [`Cause::RateLimited`](crate::backend::Cause::RateLimited), transient;
//! - `BatchTooLarge` (413), `InvalidArgument`, `InconsistentQuantities`, `MissingBody` (400):
//!   [`Cause::Refused`](crate::backend::Cause::Refused), permanent;
//! - 5xx: transient.

#[cfg(feature = "cloudfront")]
mod backend;
pub mod settings;

#[cfg(feature = "cloudfront")]
pub use backend::{CloudFrontBackend, CloudFrontDistribution};
