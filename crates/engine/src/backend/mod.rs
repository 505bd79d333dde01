//! Backends: what actually purges a cache.
//!
//! The contract ([`Backend`], [`Capabilities`], [`PurgeError`] and its [`Cause`]) is
//! [`cache_purge_hooks_core::backend`]'s, re-exported here; this module adds the built-in
//! backends, each behind the cargo feature of its name: [`LogBackend`] (`log`),
//! [`DummyBackend`] (`dummy`), [`MemoryBackend`] (`memory`), [`VarnishBackend`] (`varnish`)
//! [`NginxBackend`] (`nginx`), `NatsBackend` (`nats`, for a fleet of cache nodes), and the
//! CDNs: [`CloudflareBackend`] (`cloudflare`), [`FastlyBackend`] (`fastly`),
//! [`CloudFrontBackend`] (`cloudfront`) and [`AkamaiBackend`] (`akamai`).
//! [`RateLimit`] is the client-side token bucket the CDN backends keep their provider's
//! request rate with.
//!
//! A backend is named where it is registered: `Purger::builder().backend("edge", backend)`.

pub use cache_purge_hooks_core::backend::*;

pub use rate_limit::RateLimit;

// Every backend's module is compiled whatever the features, for its settings (a settings
// file may name any kind); the backend itself is behind the feature of its name.
pub mod akamai;
#[cfg(any(feature = "varnish", feature = "nginx"))]
pub(crate) mod cache_client;
pub mod cloudflare;
pub mod cloudfront;
pub(crate) mod dummy;
pub mod fastly;
#[cfg(any(feature = "varnish", feature = "nginx"))]
pub(crate) mod http1;
#[cfg(any(
    feature = "varnish",
    feature = "nginx",
    feature = "cloudflare",
    feature = "fastly",
    feature = "cloudfront",
    feature = "akamai",
    feature = "verify"
))]
pub(crate) mod http_client;
pub(crate) mod log;
pub(crate) mod memory;
pub mod nats;
pub mod nginx;
mod rate_limit;
pub mod varnish;

#[cfg(feature = "akamai")]
pub use akamai::{AkamaiBackend, AkamaiCheck};
#[cfg(feature = "cloudflare")]
pub use cloudflare::{CloudflareBackend, CloudflareZone};

#[cfg(feature = "cloudfront")]
pub use cloudfront::{CloudFrontBackend, CloudFrontDistribution};
#[cfg(feature = "dummy")]
pub use dummy::DummyBackend;
#[cfg(feature = "fastly")]
pub use fastly::{FastlyBackend, FastlyService};
#[cfg(feature = "log")]
pub use log::LogBackend;
#[cfg(feature = "memory")]
pub use memory::{MemoryBackend, PurgeRecord};
#[cfg(feature = "nats")]
pub use nats::NatsBackend;
#[cfg(feature = "nginx")]
pub use nginx::NginxBackend;
#[cfg(feature = "varnish")]
pub use varnish::VarnishBackend;

/// A built-in backend could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A file the backend needs cannot be read (Varnish's `secret_file`).
    #[error("cannot read {setting} `{}`: {source} ({hint})", path.display())]
    File {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// A program the backend runs cannot be used (`varnishadm_bin`).
    #[error("{setting} `{}`: {problem} ({hint})", path.display())]
    Program {
        /// The setting naming the program.
        setting: &'static str,
        /// The program.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// Settings built in code break a rule across keys (`mode = "files"` without a
    /// `key_template`...): the error of the same check the loader makes
    /// ([`NginxSettings::check`](nginx::settings::NginxSettings::check)). Each value on its own
    /// is valid by its type, so there is nothing else to refuse here.
    #[error("{setting}: {problem}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong and what is expected.
        problem: String,
    },
    /// The HTTP client could not be created (no TLS backend, for one).
    #[error("cannot create the HTTP client: {0}")]
    HttpClient(String),
}

impl From<crate::settings::types::FieldError> for SetupError {
    fn from(e: crate::settings::types::FieldError) -> Self {
        Self::Invalid {
            setting: e.key,
            problem: e.message,
        }
    }
}
