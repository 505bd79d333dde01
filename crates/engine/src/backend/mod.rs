//! Backends: what actually purges a cache.
//!
//! The contract ([`Backend`], [`Capabilities`], [`PurgeError`] and its [`Cause`]) is
//! [`cache_purge_hooks_core::backend`]'s, re-exported here; this module adds the built-in
//! backends, each behind the cargo feature of its name: [`LogBackend`] (`log`),
//! [`DummyBackend`] (`dummy`), [`MemoryBackend`] (`memory`), [`VarnishBackend`] (`varnish`)
//! and [`NginxBackend`] (`nginx`).
//!
//! A backend is named where it is registered: `Purger::builder().backend("edge", backend)`.

pub use cache_purge_hooks_core::backend::*;

#[cfg(feature = "dummy")]
mod dummy;
#[cfg(any(feature = "varnish", feature = "nginx"))]
mod http_client;
#[cfg(feature = "log")]
mod log;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "nginx")]
pub mod nginx;
#[cfg(feature = "varnish")]
pub mod varnish;

#[cfg(feature = "dummy")]
pub use dummy::DummyBackend;
#[cfg(feature = "log")]
pub use log::LogBackend;
#[cfg(feature = "memory")]
pub use memory::{MemoryBackend, PurgeRecord};
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
    /// A setting (built in code, not loaded from a file, where every value is checked) cannot
    /// work.
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
