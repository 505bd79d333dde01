//! The [`Purger`]: where purge requests enter the pipeline.
//!
//! Asking a `Purger` to purge never blocks and never fails: the targets are queued for one
//! worker task per backend, which deduplicates, batches and sends them. [`Purger::flush`]
//! waits until everything queued so far has been handled; [`Purger::shutdown`] does the same
//! with a deadline and then stops the workers.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use cache_purge_hooks_engine::{backend::MemoryBackend, Purger, Target};
//!
//! let memory = MemoryBackend::new();
//! let purger = Purger::builder().backend("memory", memory.clone()).build().unwrap();
//! purger.purge(["/a", "/b", "/a"].map(|u| Target::url(u).unwrap())).await;
//! purger.flush().await;
//! assert_eq!(memory.urls(), ["/a", "/b"]); // deduplicated
//! purger.shutdown(Duration::from_secs(5)).await.unwrap();
//! # }
//! ```
//!
//! ORM hooks find their purger with [`Purger::current`]: the one set for the running task by
//! [`Purger::scope`], else the one installed process-wide by [`Purger::install`].

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::after_commit;
use crate::attempt::{AttemptError, AttemptReport, History};
use crate::backend::{Backend, Capabilities};
use crate::dispatch::{AttemptState, Batch, Command, spawn_worker};
use crate::queue::Queue;
use crate::retry::{DeadLetter, RetryPolicy};
use crate::routing::{BackendRoute, Router};
use crate::settings::{Delivery, QueueFull};
use crate::tag_index::TagIndex;
use crate::target::Target;

/// A handle on a purge pipeline. Cheap to clone; every clone feeds the same workers.
#[derive(Clone)]
pub struct Purger {
    inner: Arc<Inner>,
}

struct Inner {
    delivery: Delivery,
    retry: RetryPolicy,
    repurge_after: Option<Duration>,
    queue: Arc<Queue>,
    outbox_wake: Arc<tokio::sync::Notify>,
    /// The claim-cycle counters of this process's outbox workers.
    outbox_rounds: Mutex<Vec<std::sync::Weak<tokio::sync::watch::Sender<u64>>>>,
    joins: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    tag_index: Option<Arc<dyn TagIndex>>,
    #[cfg(feature = "memory")]
    memory: std::collections::HashMap<String, crate::backend::MemoryBackend>,
}

impl fmt::Debug for Purger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Purger")
            .field("delivery", &self.inner.delivery)
            .field(
                "backends",
                &self
                    .inner
                    .queue
                    .workers
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Builds a [`Purger`] from backends.
#[derive(Default)]
#[must_use]
pub struct PurgerBuilder {
    delivery: Delivery,
    retry: RetryPolicy,
    queue_capacity: Option<usize>,
    when_full: QueueFull,
    spill_dir: Option<std::path::PathBuf>,
    repurge_after: Option<Duration>,
    backends: Vec<(String, Arc<dyn Backend>)>,
    /// The routes given by backend name ([`PurgerBuilder::backend_route`]).
    routes: Vec<(String, BackendRoute)>,
    /// The verifications by backend name ([`PurgerBuilder::backend_verify`]).
    verifies: Vec<(String, VerifyPlan)>,
    tag_index: Option<Arc<dyn TagIndex>>,
    /// The `tags = "index"` nginx backends added, to give the index at `build`.
    #[cfg(feature = "nginx")]
    index_slots: Vec<(String, Arc<crate::backend::nginx::TagIndexSlot>)>,
    #[cfg(feature = "memory")]
    memory: std::collections::HashMap<String, crate::backend::MemoryBackend>,
    /// The Varnish backends with `http_method = "refresh"`, which cannot be verified.
    #[cfg(feature = "varnish")]
    refreshed_in_place: Vec<String>,
    /// Where the workers run ([`PurgerBuilder::runtime`]); the current runtime if `None`.
    runtime: Option<tokio::runtime::Handle>,
}

impl fmt::Debug for PurgerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PurgerBuilder")
            .field("delivery", &self.delivery)
            .field(
                "backends",
                &self.backends.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A [`Purger`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `build` was called outside a tokio runtime, where the workers cannot run, and no
    /// runtime was given ([`PurgerBuilder::runtime`]).
    #[error(
        "a Purger must be built inside a tokio runtime, or be given one with \
         PurgerBuilder::runtime (its workers are tokio tasks)"
    )]
    NoRuntime,
    /// Two backends have the same name.
    #[error("two backends are named `{0}`; backend names must be unique")]
    DuplicateName(String),
    /// A backend could not be set up from its settings (a secret file that cannot be read,
    /// for example).
    #[error("backend `{name}`: {error}")]
    Backend {
        /// The backend's name.
        name: String,
        /// What is wrong and what to do about it.
        #[source]
        error: crate::backend::SetupError,
    },
    /// The settings name a backend kind this build cannot construct.
    #[error(
        "backend `{name}`: kind `{kind}` is not available in this build of cache-purge-hooks{hint}"
    )]
    Unavailable {
        /// The backend's name in the settings.
        name: String,
        /// Its kind.
        kind: &'static str,
        /// What to do about it.
        hint: &'static str,
    },
    /// A route was given ([`PurgerBuilder::backend_route`], or `hosts`/`paths` in the
    /// settings) for a backend the builder does not have.
    #[error("a route is given for backend `{0}`, and there is no backend of that name")]
    RouteForUnknownBackend(String),
    /// Verification was asked for ([`PurgerBuilder::backend_verify`]) for a backend the
    /// builder does not have.
    #[error("verification is asked for backend `{0}`, and there is no backend of that name")]
    VerifyForUnknownBackend(String),
    /// Verification or refresh was asked for a Varnish backend with `http_method =
    /// "refresh"`: its refreshed pages are hits on their new copies, which a check cannot
    /// tell from stale ones, and it already refreshes every URL it purges.
    #[error(
        "backend `{0}` refreshes in place (http_method = \"refresh\"): it cannot be verified \
         (a refreshed page is a hit on its new copy) and needs no refresh after purge"
    )]
    VerifyRefreshedInPlace(String),
    /// Verification is on for a backend and no cache address is known to ask
    /// ([`VerifySettings::url`](crate::verify::VerifySettings::url)).
    #[error("backend `{0}`: verify is on and there is no cache address to ask (set verify_url)")]
    VerifyWithoutAddress(String),
    /// Verification is on for a backend and this build has no HTTP client for it.
    #[error(
        "backend `{0}`: verify is not available in this build of cache-purge-hooks (enable the \
         cargo feature `verify`)"
    )]
    VerifyUnavailable(String),
    /// A backend purges tags through the tag index (nginx's `tags = "index"`) and no index
    /// was given.
    #[error(
        "backend `{name}`: tags = \"index\" needs a tag index, and none was given: add a \
         [tag_index] table to the settings (kind = \"redis\", url = \"redis://...\"), or pass \
         one in code with PurgerBuilder::tag_index (a SqlTagIndex of cache-purge-hooks-sea-orm, \
         say), or set tags = \"none\""
    )]
    NoTagIndex {
        /// The backend's name.
        name: String,
    },
    /// The `[tag_index]` of the settings could not be set up.
    #[error("tag_index: {0}")]
    TagIndex(#[source] crate::tag_index::TagIndexError),
    /// The `[tag_index]` of the settings names a kind this build cannot construct.
    #[error(
        "tag_index: kind `{kind}` is not available in this build of cache-purge-hooks (enable \
         the cargo feature `{kind}`)"
    )]
    TagIndexUnavailable {
        /// The kind.
        kind: &'static str,
    },
}

impl PurgerBuilder {
    /// Adds a backend under this name (used in logs, statistics, the outbox's rows and the
    /// settings file's `[backends.NAME]`). Every purge goes to every backend that can purge its
    /// kind of target, unless routes say otherwise ([`backend_route`](Self::backend_route)).
    pub fn backend<B: Backend>(mut self, name: impl Into<String>, backend: B) -> Self {
        let name = name.into();
        #[cfg(feature = "memory")]
        if let Some(m) =
            (&backend as &dyn std::any::Any).downcast_ref::<crate::backend::MemoryBackend>()
        {
            self.memory.insert(name.clone(), m.clone());
        }
        #[cfg(feature = "nginx")]
        if let Some(slot) = (&backend as &dyn std::any::Any)
            .downcast_ref::<crate::backend::NginxBackend>()
            .and_then(|n| n.tag_index_slot())
        {
            self.index_slots.push((name.clone(), slot));
        }
        #[cfg(feature = "varnish")]
        if (&backend as &dyn std::any::Any)
            .downcast_ref::<crate::backend::VarnishBackend>()
            .is_some_and(crate::backend::VarnishBackend::refreshes_in_place)
        {
            self.refreshed_in_place.push(name.clone());
        }
        self.backends.push((name, Arc::new(backend)));
        self
    }

    /// Sets the tag→URL index of the backends that purge tags through one (nginx with
    /// `tags = "index"`) and were not given their own
    /// ([`NginxBackend::with_tag_index`](crate::backend::NginxBackend::with_tag_index)); it
    /// replaces the settings' `[tag_index]`. The same index must be the one the response
    /// side records into ([`Purger::tag_index`] hands it out).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::Arc;
    /// use cache_purge_hooks_engine::tag_index::MemoryTagIndex;
    /// use cache_purge_hooks_engine::{BuildError, Purger, PurgerBuilder, Settings};
    ///
    /// let settings = Settings::from_toml_str(
    ///     "[backends.ngx]\nkind = \"nginx\"\nservers = [\"127.0.0.1:8080\"]\ntags = \"index\"\n",
    /// )
    /// .unwrap();
    /// // No index: an error naming the backend, never a backend that silently skips tags.
    /// let err = PurgerBuilder::from_settings(&settings).unwrap().build().unwrap_err();
    /// assert!(matches!(&err, BuildError::NoTagIndex { name } if name == "ngx"), "{err}");
    ///
    /// let purger = PurgerBuilder::from_settings(&settings)
    ///     .unwrap()
    ///     .tag_index(Arc::new(MemoryTagIndex::new()))
    ///     .build()
    ///     .unwrap();
    /// assert!(purger.tag_index().is_some());
    /// # }
    /// ```
    pub fn tag_index(mut self, index: Arc<dyn TagIndex>) -> Self {
        self.tag_index = Some(index);
        self
    }

    /// Whether [`build`](Self::build) needs a [`tag_index`](Self::tag_index) still: a backend
    /// purges tags through an index (nginx with `tags = "index"`) and neither the settings'
    /// `[tag_index]` nor code gave one. An application that keeps the index in its own
    /// database sets one up only then, so that its pages are not recorded for nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::Arc;
    /// use cache_purge_hooks_engine::tag_index::MemoryTagIndex;
    /// use cache_purge_hooks_engine::{PurgerBuilder, Settings};
    ///
    /// let settings = Settings::from_toml_str(
    ///     "[backends.ngx]\nkind = \"nginx\"\nservers = [\"127.0.0.1:8080\"]\ntags = \"index\"\n",
    /// )
    /// .unwrap();
    /// let mut builder = PurgerBuilder::from_settings(&settings).unwrap();
    /// assert!(builder.needs_tag_index());
    /// builder = builder.tag_index(Arc::new(MemoryTagIndex::new()));
    /// assert!(!builder.needs_tag_index());
    ///
    /// let without_tags = Settings::from_toml_str("[backends.ngx]\nkind = \"nginx\"\n").unwrap();
    /// assert!(!PurgerBuilder::from_settings(&without_tags).unwrap().needs_tag_index());
    /// # }
    /// ```
    pub fn needs_tag_index(&self) -> bool {
        #[cfg(feature = "nginx")]
        if self.tag_index.is_none() && self.index_slots.iter().any(|(_, s)| s.0.get().is_none()) {
            return true;
        }
        false
    }

    /// Routes by host ([`crate::routing`]): the backend of this name (added before or after
    /// this call) takes only the targets its route takes. Replaces the route the settings
    /// gave it (`hosts`, `paths`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use cache_purge_hooks_engine::{backend::MemoryBackend, BackendRoute, Purger, Target};
    ///
    /// let (www, shop) = (MemoryBackend::new(), MemoryBackend::new());
    /// let purger = Purger::builder()
    ///     .backend("www", www.clone())
    ///     .backend("shop", shop.clone())
    ///     .backend_route("www", BackendRoute::default().hosts(["www.example.com"]).unwrap().paths(true))
    ///     .backend_route("shop", BackendRoute::default().hosts(["shop.example.com"]).unwrap())
    ///     .build()
    ///     .unwrap();
    /// purger
    ///     .purge(["https://www.example.com/a", "https://shop.example.com/b", "/c"].map(|u| Target::url(u).unwrap()))
    ///     .await;
    /// purger.flush().await;
    /// assert_eq!(www.urls(), ["https://www.example.com/a", "/c"]);
    /// assert_eq!(shop.urls(), ["https://shop.example.com/b"]);
    /// # }
    /// ```
    pub fn backend_route(mut self, backend: impl Into<String>, route: BackendRoute) -> Self {
        let backend = backend.into();
        self.routes.retain(|(name, _)| *name != backend);
        self.routes.push((backend, route));
        self
    }

    /// Verifies the purges of the backend of this name ([`crate::verify`]): each purged URL
    /// (all, or a sample) is asked for through `settings.url`, the cache's address, and judged
    /// by `settings.header` (default `X-Cache`). Replaces what the settings gave it.
    pub fn backend_verify(
        mut self,
        backend: impl Into<String>,
        settings: crate::verify::VerifySettings,
    ) -> Self {
        let backend = backend.into();
        self.verifies.retain(|(name, _)| *name != backend);
        let header = settings
            .header
            .as_ref()
            .map_or_else(|| "X-Cache".to_owned(), |h| h.as_str().to_owned());
        self.verifies.push((
            backend,
            VerifyPlan {
                settings,
                header,
                hint: crate::verify::hint_for(""),
            },
        ));
        self
    }

    /// Adds an already shared backend under this name.
    pub fn shared_backend(mut self, name: impl Into<String>, backend: Arc<dyn Backend>) -> Self {
        self.backends.push((name.into(), backend));
        self
    }

    /// Sets the delivery mode (default [`Delivery::AfterCommit`]).
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// Sets when failed purges are retried and given up on (default
    /// [`RetryPolicy::default`]: 8 attempts, 200 ms doubling to 30 s, 1 hour at most).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how many targets may wait per backend (default 100000) before the
    /// [`when_full`](Self::when_full) policy applies (see [`Purger::purge`]).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = Some(capacity.max(1));
        self
    }

    /// Sets what a full queue does (default [`QueueFull::Spill`]).
    pub fn when_full(mut self, policy: QueueFull) -> Self {
        self.when_full = policy;
        self
    }

    /// Purges every target a second time, this long after its purge was delivered (default:
    /// never): against the in-flight race, where a request that read the row before the
    /// COMMIT answers after the purge and puts the old page back in the cache. Choose it
    /// longer than your slowest page takes to render. Deduplicated (a target purged again
    /// meanwhile gets one second purge, after the last), counted (`repurging`, `repurged`),
    /// and, with `delivery = "outbox"`, written as a second row due then, so it survives a
    /// restart. It doubles the purges sent: mind a CDN's rate limits.
    pub fn repurge_after(mut self, delay: Duration) -> Self {
        self.repurge_after = Some(delay);
        self
    }

    /// Runs the workers (one per backend: the queue, the batching, the backend's requests
    /// and connections) on this runtime instead of the one `build` is called in, which need
    /// not then be a runtime at all. Saves still queue their purges from anywhere.
    ///
    /// Give it a current-thread runtime driven by a thread of its own to keep delivery off
    /// the application's runtime: its tasks then never wait behind the application's, nor
    /// the application's behind a burst of purges. In `cache-purge-bench`'s scenario 1b
    /// (Varnish, 10,000 PURGEs from one process) the purging process then spent about 10 %
    /// less CPU per purge and was switched out a third less often, at the same rate or a few
    /// per cent below it (docs/performance.md).
    ///
    /// ```
    /// use cache_purge_hooks_engine::backend::MemoryBackend;
    /// use cache_purge_hooks_engine::{Delivery, Purger, Target};
    ///
    /// // A runtime for delivery, driven by a thread of its own until the process ends.
    /// let delivery = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let handle = delivery.handle().clone();
    /// std::thread::Builder::new()
    ///     .name("cache-purge".into())
    ///     .spawn(move || delivery.block_on(std::future::pending::<()>()))?;
    ///
    /// let cache = MemoryBackend::new();
    /// // Built outside any runtime: the workers go to `handle`'s.
    /// let purger = Purger::builder()
    ///     .delivery(Delivery::Immediate)
    ///     .backend("memory", cache.clone())
    ///     .runtime(handle)
    ///     .build()?;
    /// purger.try_purge([Target::url("/posts/1")?]);
    ///
    /// // Waiting works from any runtime (or none: `futures::executor::block_on`).
    /// let app = tokio::runtime::Builder::new_current_thread().build()?;
    /// app.block_on(purger.flush());
    /// assert_eq!(cache.urls(), ["/posts/1"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Sets the directory for spill files (default: `cache-purge-spill` in the system's
    /// temporary directory). Each pipeline uses a subdirectory of its own, removed at
    /// [`Purger::shutdown`]; see [`QueueFull::Spill`].
    pub fn spill_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.spill_dir = Some(dir.into());
        self
    }

    /// A builder with the backends and delivery mode of these settings, to which more
    /// backends can be added.
    pub fn from_settings(settings: &crate::Settings) -> Result<PurgerBuilder, BuildError> {
        let mut builder = Purger::builder()
            .delivery(settings.delivery)
            .retry(settings.retry.clone())
            .queue_capacity(settings.queue_capacity)
            .when_full(settings.when_full);
        if let Some(dir) = &settings.spill_dir {
            builder = builder.spill_dir(dir.clone());
        }
        if let Some(after) = settings.repurge_after {
            builder = builder.repurge_after(after);
        }
        for (name, backend) in &settings.backends {
            builder = builder.settings_backend(name, &backend.settings)?;
            if !backend.common.route.is_default() {
                builder = builder.backend_route(name, backend.common.route.clone());
            }
            if backend.common.verify.needs_address() {
                let mut verify = backend.common.verify.clone();
                verify.url = backend.verify_url();
                builder.verifies.retain(|(n, _)| n != name);
                builder.verifies.push((
                    name.clone(),
                    VerifyPlan {
                        settings: verify,
                        header: backend.verify_header(),
                        hint: backend.verify_hint(),
                    },
                ));
            }
        }
        if let Some(index) = &settings.tag_index {
            builder = builder.tag_index(settings_tag_index(index)?);
        }
        Ok(builder)
    }

    /// Adds the backend one `[backends.NAME]` table describes.
    fn settings_backend(
        self,
        name: &str,
        backend: &crate::settings::BackendSettings,
    ) -> Result<Self, BuildError> {
        #[cfg(any(
            feature = "log",
            feature = "dummy",
            feature = "memory",
            feature = "varnish",
            feature = "nginx",
            feature = "cloudflare",
            feature = "fastly",
            feature = "cloudfront",
            feature = "akamai",
            feature = "nats"
        ))]
        use crate::settings::BackendSettings;
        #[cfg(any(
            feature = "varnish",
            feature = "nginx",
            feature = "cloudflare",
            feature = "fastly",
            feature = "cloudfront",
            feature = "akamai",
            feature = "nats"
        ))]
        let named = |error| BuildError::Backend {
            name: name.to_owned(),
            error,
        };
        match backend {
            #[cfg(feature = "log")]
            BackendSettings::Log(_) => Ok(self.backend(name, crate::backend::LogBackend::new())),
            #[cfg(feature = "dummy")]
            BackendSettings::Dummy(_) => {
                Ok(self.backend(name, crate::backend::DummyBackend::new()))
            }
            #[cfg(feature = "memory")]
            BackendSettings::Memory(m) => Ok(self.backend(
                name,
                crate::backend::MemoryBackend::new().with_max_batch(m.max_batch.get()),
            )),
            #[cfg(feature = "varnish")]
            BackendSettings::Varnish(v) => {
                Ok(self.backend(name, crate::backend::VarnishBackend::new(v).map_err(named)?))
            }
            #[cfg(feature = "nginx")]
            BackendSettings::Nginx(n) => {
                Ok(self.backend(name, crate::backend::NginxBackend::new(n).map_err(named)?))
            }
            #[cfg(feature = "cloudflare")]
            BackendSettings::Cloudflare(c) => Ok(self.backend(
                name,
                crate::backend::CloudflareBackend::new(c).map_err(named)?,
            )),
            #[cfg(feature = "fastly")]
            BackendSettings::Fastly(f) => {
                Ok(self.backend(name, crate::backend::FastlyBackend::new(f).map_err(named)?))
            }
            #[cfg(feature = "cloudfront")]
            BackendSettings::CloudFront(c) => Ok(self.backend(
                name,
                crate::backend::CloudFrontBackend::new(c).map_err(named)?,
            )),
            #[cfg(feature = "akamai")]
            BackendSettings::Akamai(a) => {
                Ok(self.backend(name, crate::backend::AkamaiBackend::new(a).map_err(named)?))
            }
            #[cfg(feature = "nats")]
            BackendSettings::Nats(n) => {
                Ok(self.backend(name, crate::backend::NatsBackend::new(n).map_err(named)?))
            }
            #[allow(unreachable_patterns)]
            other => Err(BuildError::Unavailable {
                name: name.to_owned(),
                kind: other.kind(),
                hint: " (enable the cargo feature of the same name)",
            }),
        }
    }

    /// Starts one worker per backend on the current tokio runtime (or the one given to
    /// [`runtime`](Self::runtime)).
    ///
    /// With no backend at all, purges are accepted and dropped with a warning: say so
    /// explicitly with a `dummy` backend instead.
    pub fn build(mut self) -> Result<Purger, BuildError> {
        let runtime = match self.runtime.take() {
            Some(runtime) => runtime,
            None => tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?,
        };
        let mut names = std::collections::HashSet::new();
        for (name, _) in &self.backends {
            if !names.insert(name.as_str()) {
                return Err(BuildError::DuplicateName(name.clone()));
            }
        }
        #[cfg(feature = "nginx")]
        for (name, slot) in &self.index_slots {
            if slot.0.get().is_none() {
                let Some(index) = &self.tag_index else {
                    return Err(BuildError::NoTagIndex { name: name.clone() });
                };
                let _ = slot.0.set(Arc::clone(index));
            }
        }
        if self.backends.is_empty() {
            tracing::warn!(target: "cache_purge_hooks", "Purger built without any backend");
        }
        let mut routes = Vec::with_capacity(self.backends.len());
        for (name, _) in &self.backends {
            routes.push(
                self.routes
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, r)| r.clone())
                    .unwrap_or_default(),
            );
        }
        if let Some((unknown, _)) = self
            .routes
            .iter()
            .find(|(n, _)| !names.contains(n.as_str()))
        {
            return Err(BuildError::RouteForUnknownBackend(unknown.clone()));
        }
        if let Some((unknown, _)) = self
            .verifies
            .iter()
            .find(|(n, _)| !names.contains(n.as_str()))
        {
            return Err(BuildError::VerifyForUnknownBackend(unknown.clone()));
        }
        #[cfg(feature = "varnish")]
        if let Some((name, _)) = self
            .verifies
            .iter()
            .find(|(n, p)| p.settings.needs_address() && self.refreshed_in_place.contains(n))
        {
            return Err(BuildError::VerifyRefreshedInPlace(name.clone()));
        }
        let mut workers = Vec::new();
        let mut joins = Vec::new();
        let room = Arc::new(tokio::sync::Notify::new());
        let capacity = self.queue_capacity.unwrap_or(100_000) as u64;
        let spill_dir =
            crate::spill::pipeline_dir(&self.spill_dir.unwrap_or_else(crate::spill::default_dir));
        for (index, (name, backend)) in self.backends.into_iter().enumerate() {
            // Files are named by position: backend names built in code may hold any character.
            let spill = crate::spill::Spill::new(&spill_dir, &format!("{index}.targets"));
            let plan = self
                .verifies
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| p);
            #[cfg(not(feature = "verify"))]
            if plan.is_some_and(|p| p.settings.needs_address()) {
                return Err(BuildError::VerifyUnavailable(name));
            }
            let config = crate::dispatch::WorkerConfig {
                retry: self.retry.clone(),
                room: room.clone(),
                spill,
                refill: crate::dispatch::Refill::for_capacity(capacity),
                repurge_after: self.repurge_after,
                #[cfg(feature = "verify")]
                verifier: verifier(&name, plan)?,
                #[cfg(all(feature = "verify", feature = "nginx"))]
                tag_index: self
                    .index_slots
                    .iter()
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, slot)| slot.0.get().cloned()),
                #[cfg(all(feature = "verify", not(feature = "nginx")))]
                tag_index: None,
            };
            let (handle, join) = spawn_worker(name, backend, config, &runtime);
            workers.push(handle);
            joins.push(join);
        }
        Ok(Purger {
            inner: Arc::new(Inner {
                delivery: self.delivery,
                retry: self.retry,
                repurge_after: self.repurge_after,
                queue: Arc::new(Queue {
                    workers,
                    capacity,
                    when_full: self.when_full,
                    room,
                    closed: AtomicBool::new(false),
                    spill_dir,
                    router: Router::new(routes),
                    unrouted: AtomicU64::new(0),
                }),
                outbox_wake: Arc::new(tokio::sync::Notify::new()),
                outbox_rounds: Mutex::new(Vec::new()),
                joins: Mutex::new(joins),
                tag_index: self.tag_index,
                #[cfg(feature = "memory")]
                memory: self.memory,
            }),
        })
    }
}

/// A backend's verification, with the defaults of its kind resolved.
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "verify"), allow(dead_code))]
struct VerifyPlan {
    settings: crate::verify::VerifySettings,
    header: String,
    hint: &'static str,
}

/// The verifier of a backend's plan, if verification is on.
#[cfg(feature = "verify")]
fn verifier(
    name: &str,
    plan: Option<&VerifyPlan>,
) -> Result<Option<Arc<crate::verify::Verifier>>, BuildError> {
    let Some(plan) = plan.filter(|p| p.settings.needs_address()) else {
        return Ok(None);
    };
    let Some(url) = &plan.settings.url else {
        return Err(BuildError::VerifyWithoutAddress(name.to_owned()));
    };
    crate::verify::Verifier::new(&plan.settings, url, &plan.header, plan.hint)
        .map(|v| v.map(Arc::new))
        .map_err(|error| BuildError::Backend {
            name: name.to_owned(),
            error,
        })
}

/// The index a `[tag_index]` table describes.
fn settings_tag_index(
    settings: &crate::settings::TagIndexSettings,
) -> Result<Arc<dyn TagIndex>, BuildError> {
    use crate::settings::TagIndexKind;
    match settings.kind {
        TagIndexKind::Redis => {
            #[cfg(feature = "redis")]
            {
                crate::tag_index::RedisTagIndex::from_settings(settings)
                    .map(|i| Arc::new(i) as Arc<dyn TagIndex>)
                    .map_err(BuildError::TagIndex)
            }
            #[cfg(not(feature = "redis"))]
            Err(BuildError::TagIndexUnavailable { kind: "redis" })
        }
        _ => Ok(Arc::new(
            crate::tag_index::MemoryTagIndex::new()
                .with_max_urls_per_tag(settings.max_urls_per_tag.get()),
        )),
    }
}

fn global() -> &'static RwLock<Option<Purger>> {
    static GLOBAL: RwLock<Option<Purger>> = RwLock::new(None);
    &GLOBAL
}

tokio::task_local! {
    static CURRENT: Purger;
}

/// [`Purger::shutdown`] ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cache purge shutdown timed out with {undelivered} target(s) still queued")]
pub struct ShutdownTimeout {
    /// How many targets (summed over backends) were still waiting.
    pub undelivered: u64,
}

impl Purger {
    /// Builds a purger with the backends and delivery mode of these settings.
    pub fn from_settings(settings: &crate::Settings) -> Result<Purger, BuildError> {
        PurgerBuilder::from_settings(settings)?.build()
    }

    /// A builder with no backend and [`Delivery::AfterCommit`].
    pub fn builder() -> PurgerBuilder {
        PurgerBuilder::default()
    }

    /// An identity of the pipeline, equal for every clone of this purger and different for
    /// every other purger alive (ORM crates use it to keep per-pipeline state apart).
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// The delivery mode.
    pub fn delivery(&self) -> Delivery {
        self.inner.delivery
    }

    /// What the backend of this name can purge.
    pub fn capabilities(&self, backend: &str) -> Option<Capabilities> {
        self.inner
            .queue
            .workers
            .iter()
            .find(|w| w.name == backend)
            .map(|w| w.capabilities)
    }

    /// One attempt of these targets on one backend, through the engine (batched and
    /// deduplicated with everything else queued for it, counted in its statistics), for an
    /// agent that keeps its own durable retry schedule: the outbox worker, a fleet agent. The
    /// report says per target whether it was purged and, if not, the error and the retry
    /// policy's verdict, given the purge's `history` (see [`crate::attempt`]).
    ///
    /// The targets are handed to the engine when this is called; the future waits for the
    /// report.
    pub fn attempt(
        &self,
        backend: &str,
        targets: Vec<Target>,
        history: History,
    ) -> impl Future<Output = Result<AttemptReport, AttemptError>> + Send + 'static {
        self.attempt_routed(backend, targets, history, true)
    }

    /// [`attempt`](Self::attempt), with the backend's route applied or not: a fleet agent
    /// that missed purges must purge everything on every local backend, whatever each one's
    /// `hosts` and `paths` say, or a backend serving only some hosts would keep stale pages.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn attempt_routed(
        &self,
        backend: &str,
        targets: Vec<Target>,
        history: History,
        routed: bool,
    ) -> impl Future<Output = Result<AttemptReport, AttemptError>> + Send + 'static {
        let sent = match self.inner.queue.workers.iter().find(|w| w.name == backend) {
            None => Err(AttemptError::UnknownBackend(backend.to_owned())),
            Some(_) if self.inner.queue.closed.load(Ordering::Acquire) => {
                Err(AttemptError::Stopped)
            }
            Some(w) => {
                let (targets, not_routed) = if routed {
                    self.routed_to(backend, targets)
                } else {
                    (targets, Vec::new())
                };
                let (tx, rx) = oneshot::channel();
                let state = AttemptState::new(history, tx);
                w.tx.send(Command::Attempt(state, targets))
                    .map(|()| (rx, not_routed))
                    .map_err(|_| AttemptError::Stopped)
            }
        };
        async move {
            let (rx, not_routed) = sent?;
            let mut report = rx.await.map_err(|_| AttemptError::Stopped)?;
            report.not_routed = not_routed;
            Ok(report)
        }
    }

    /// Splits an attempt's targets into those the backend's route takes and the others.
    /// Those no backend takes are counted as unrouted once, on the first backend (an outbox
    /// writes one row per backend).
    fn routed_to(&self, backend: &str, targets: Vec<Target>) -> (Vec<Target>, Vec<Target>) {
        let queue = &self.inner.queue;
        if queue.router.is_open() {
            return (targets, Vec::new());
        }
        let Some(index) = queue.workers.iter().position(|w| w.name == backend) else {
            return (targets, Vec::new());
        };
        let (mine, others): (Vec<Target>, Vec<Target>) = targets
            .into_iter()
            .partition(|t| queue.router.serves(index, t));
        if index == 0 {
            queue.count_unrouted(&others);
        }
        (mine, others)
    }

    /// The retry policy of this pipeline.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// Signalled when purges were written to the outbox by this process, so that its outbox
    /// worker delivers them at once instead of at its next poll.
    pub fn outbox_wake(&self) -> Arc<tokio::sync::Notify> {
        self.inner.outbox_wake.clone()
    }

    /// The tag→URL index of this purger's `tags = "index"` backends (from the settings'
    /// `[tag_index]` or [`PurgerBuilder::tag_index`]), for the response side to
    /// [`record`](TagIndex::record) into; `None` when it has none.
    pub fn tag_index(&self) -> Option<Arc<dyn TagIndex>> {
        self.inner.tag_index.clone()
    }

    /// The backends' names, in the order they were added.
    pub fn backend_names(&self) -> Vec<&str> {
        self.inner
            .queue
            .workers
            .iter()
            .map(|w| w.name.as_str())
            .collect()
    }

    /// The [`MemoryBackend`](crate::backend::MemoryBackend) of this name, if the purger has one
    /// (from the settings file or the builder): what tests assert on.
    #[cfg(feature = "memory")]
    pub fn memory_backend(&self, name: &str) -> Option<crate::backend::MemoryBackend> {
        self.inner.memory.get(name).cloned()
    }

    /// Makes this the process-wide purger that ORM hooks use (replacing any earlier one).
    pub fn install(&self) {
        *global().write().unwrap_or_else(|p| p.into_inner()) = Some(self.clone());
    }

    /// Removes the process-wide purger, returning it.
    pub fn uninstall() -> Option<Purger> {
        global().write().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The purger for the running task: the one set by [`Purger::scope`] if any, else the one
    /// installed by [`Purger::install`].
    pub fn current() -> Option<Purger> {
        CURRENT
            .try_with(Purger::clone)
            .ok()
            .or_else(|| global().read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Runs `fut` with this purger as [`Purger::current`], whatever is installed globally:
    /// lets tests (or apps with several pipelines) run side by side.
    pub async fn scope<F: Future>(&self, fut: F) -> F::Output {
        CURRENT.scope(self.clone(), fut).await
    }

    /// Purges these targets: queues them for every backend that can purge their kind, and
    /// returns once they are queued (the purge itself happens in the background; [`flush`](
    /// Self::flush) waits for it). Never fails.
    ///
    /// Inside an after-commit scope (a transaction of `cache_purge_hooks::sea_orm::transaction`
    /// or the Diesel crate's, with [`Delivery::AfterCommit`]), the targets wait for the COMMIT
    /// and are dropped on rollback.
    ///
    /// Each backend holds at most `queue_capacity` undelivered targets
    /// ([`PurgerBuilder::queue_capacity`]). With `when_full = "wait"` this waits until there is
    /// room (never while a queue is empty, so a purge larger than the capacity still goes
    /// through); otherwise, and in [`try_purge`](Self::try_purge), the `when_full` policy
    /// applies at once (see [`QueueFull`]).
    pub async fn purge(&self, targets: impl IntoIterator<Item = Target>) {
        let Some(targets) = self.not_held_back(targets) else {
            return;
        };
        if self.inner.queue.when_full == QueueFull::Wait {
            self.inner.queue.wait_for_room(targets.len() as u64).await;
        }
        self.inner.queue.send(targets);
    }

    /// [`purge`](Self::purge) for code that cannot wait (outside async code, or where a save
    /// must never slow down): a full queue applies the `when_full` policy at once instead of
    /// waiting for room. Never blocks, never fails.
    pub fn try_purge(&self, targets: impl IntoIterator<Item = Target>) {
        if let Some(targets) = self.not_held_back(targets) {
            self.inner.queue.send(targets);
        }
    }

    /// The targets to send now: none when empty, or when an after-commit scope holds them.
    fn not_held_back(&self, targets: impl IntoIterator<Item = Target>) -> Option<Vec<Target>> {
        let targets: Vec<Target> = targets.into_iter().collect();
        if targets.is_empty() {
            return None;
        }
        match self.inner.delivery {
            Delivery::AfterCommit => after_commit::buffer(&self.inner.queue, targets),
            // A purge reaching the Purger directly (by hand, or from code that has no
            // connection to write outbox rows through) is sent at once; the ORM integrations
            // ask [`Purger::route`] first.
            Delivery::Immediate | Delivery::Outbox => Some(targets),
        }
    }

    /// Where the targets of a database write go, for the ORM integrations: decided here,
    /// once, for SeaORM and Diesel alike (ask before the write's transaction ends).
    ///
    /// - [`Route::Outbox`]: write them as outbox rows (one per backend, see
    ///   [`crate::outbox`]) through the write's own connection, in its transaction, then call
    ///   [`Purger::outbox_written`] once the rows are committed; if the rows cannot be
    ///   written, hand the targets to [`purge`](Self::purge) rather than lose them.
    /// - [`Route::Queue`]: hand them to [`purge`](Self::purge) / [`try_purge`](Self::try_purge)
    ///   once the write has committed (inside an after-commit scope, the scope holds them until
    ///   its COMMIT).
    pub fn route(&self) -> Route {
        match self.inner.delivery {
            Delivery::Outbox => Route::Outbox {
                backends: self
                    .backend_names()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                repurge_after: self.inner.repurge_after,
            },
            Delivery::Immediate | Delivery::AfterCommit => Route::Queue,
        }
    }

    /// Outbox rows of this process were committed: wakes its outbox worker, which then
    /// delivers them at once instead of at its next poll. In a [`Watch`](crate::watch::Watch)
    /// (read-your-writes), notes them so that the watch waits for the worker to have
    /// delivered them.
    pub fn outbox_written(&self) {
        if crate::watch::is_watched() {
            let mut rounds = self
                .inner
                .outbox_rounds
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            rounds.retain(|r| r.strong_count() > 0);
            for round in rounds.iter().filter_map(std::sync::Weak::upgrade) {
                let rx = round.subscribe();
                // The cycle running now may have claimed before these rows committed; the
                // next one claims them.
                let until = *rx.borrow() + 2;
                crate::watch::note_outbox(rx, until);
            }
        }
        self.inner.outbox_wake.notify_waiters();
    }

    /// For an outbox worker of this process: a counter of its claim cycles, which
    /// read-your-writes waits on (see [`OutboxRounds`]).
    pub fn outbox_rounds(&self) -> OutboxRounds {
        let round = Arc::new(tokio::sync::watch::Sender::new(0));
        self.inner
            .outbox_rounds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&round));
        OutboxRounds { round }
    }

    /// Logs (at ERROR, naming `source` and the targets) a write's purge that no purger was
    /// installed to receive, so that the loss is visible: what the ORM integrations do when
    /// [`Purger::current`] is `None`.
    pub fn log_missing(source: &str, targets: &[Target]) {
        if !targets.is_empty() {
            let shown: Vec<String> = targets.iter().take(20).map(ToString::to_string).collect();
            tracing::error!(
                target: "cache_purge_hooks",
                source,
                targets = ?shown,
                count = targets.len(),
                "no Purger installed: call cache_purge_hooks::init() (or Purger::install) at start-up; purge dropped"
            );
        }
    }

    /// Waits until every target queued before this call has been attempted: delivered, or
    /// failed (and then waiting for a retry, or dead). Use [`Purger::shutdown`] to wait for
    /// retries too.
    pub async fn flush(&self) {
        let mut acks = Vec::with_capacity(self.inner.queue.workers.len());
        for w in &self.inner.queue.workers {
            let (tx, rx) = oneshot::channel();
            if w.tx.send(Command::Flush(tx)).is_ok() {
                acks.push(rx);
            }
        }
        for ack in acks {
            // An error means the worker stopped: nothing more will be delivered by it.
            let _ = ack.await;
        }
    }

    /// Flushes with a deadline, keeps retrying what failed until nothing is left or the
    /// deadline passes, then stops the workers. Purges requested afterwards are logged as
    /// errors and dropped.
    pub async fn shutdown(&self, deadline: Duration) -> Result<(), ShutdownTimeout> {
        let started = tokio::time::Instant::now();
        let mut flushed = tokio::time::timeout(deadline, self.flush()).await.is_ok();
        // Then give the retries what is left of the deadline.
        while flushed && self.undelivered() > 0 {
            if started.elapsed() >= deadline {
                flushed = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.inner.queue.closed.store(true, Ordering::Release);
        let undelivered: u64 = self
            .inner
            .queue
            .workers
            .iter()
            .map(|w| w.counters.queued.load(Ordering::Relaxed))
            .sum();
        let joins: Vec<_> =
            std::mem::take(&mut *self.inner.joins.lock().unwrap_or_else(|p| p.into_inner()));
        for j in joins {
            j.abort();
        }
        for w in &self.inner.queue.workers {
            w.spill.remove();
        }
        let _ = std::fs::remove_dir(&self.inner.queue.spill_dir);
        if flushed && undelivered == 0 {
            Ok(())
        } else {
            tracing::error!(target: "cache_purge_hooks", undelivered, "shutdown deadline passed");
            Err(ShutdownTimeout { undelivered })
        }
    }

    /// Targets no backend takes, since the start: absolute URLs (or prefixes) of a host no
    /// backend's `hosts` matches (see [`crate::routing`]). Each is logged at WARN when
    /// purged; also the `metrics` counter `cache_purge_unrouted_total`.
    pub fn unrouted(&self) -> u64 {
        self.inner.queue.unrouted.load(Ordering::Relaxed)
    }

    /// Targets not yet delivered nor given up on, over all backends.
    pub fn undelivered(&self) -> u64 {
        self.inner
            .queue
            .workers
            .iter()
            .map(|w| w.counters.queued.load(Ordering::Relaxed))
            .sum()
    }

    /// The purges given up on, oldest first, over all backends (each backend keeps the last
    /// `retry.dead_letter_capacity`).
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        let mut all = Vec::new();
        for w in &self.inner.queue.workers {
            all.extend(
                w.dead
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned(),
            );
        }
        all.sort_by_key(|d| d.died);
        all
    }

    /// Queues every dead letter again (each to its own backend, with fresh attempts) and
    /// empties the list. Returns how many were queued.
    pub fn retry_dead(&self) -> usize {
        let mut total = 0;
        for w in &self.inner.queue.workers {
            let letters: Vec<Target> = w
                .dead
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
                .map(|d| d.target)
                .collect();
            if letters.is_empty() {
                continue;
            }
            total += letters.len();
            w.counters
                .queued
                .fetch_add(letters.len() as u64, Ordering::Relaxed);
            if w.tx.send(Command::Purge(Batch::Owned(letters))).is_err() {
                tracing::error!(target: "cache_purge_hooks", backend = %w.name, "backend worker has stopped; dead letters not retried");
            }
        }
        total
    }

    /// A snapshot of every backend's counters.
    pub fn stats(&self) -> Vec<BackendStats> {
        self.inner
            .queue
            .workers
            .iter()
            .map(|w| {
                let c = &w.counters;
                let batches = c.batches.load(Ordering::Relaxed);
                let busy = Duration::from_micros(c.busy_micros.load(Ordering::Relaxed));
                BackendStats {
                    backend: w.name.clone(),
                    queued: c.queued.load(Ordering::Relaxed),
                    retrying: c.retrying.load(Ordering::Relaxed),
                    purged: c.purged.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                    retried: c.retried.load(Ordering::Relaxed),
                    dead: c.dead.load(Ordering::Relaxed),
                    dead_evicted: c.dead_evicted.load(Ordering::Relaxed),
                    coalesced: c.coalesced.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                    spilled: c.spilled.load(Ordering::Relaxed),
                    in_spill: w.spill.count(),
                    peak_in_memory: c.peak_in_memory.load(Ordering::Relaxed),
                    repurging: c.repurging.load(Ordering::Relaxed),
                    repurged: c.repurged.load(Ordering::Relaxed),
                    mean_latency: if batches == 0 {
                        Duration::ZERO
                    } else {
                        busy / batches as u32
                    },
                    batches: c.batches.load(Ordering::Relaxed),
                    unsupported: c.unsupported.load(Ordering::Relaxed),
                    deduplicated: c.deduplicated.load(Ordering::Relaxed),
                    verified: c.verified.load(Ordering::Relaxed),
                    verify_failed: c.verify_failed.load(Ordering::Relaxed),
                    verify_unanswered: c.verify_unanswered.load(Ordering::Relaxed),
                    refreshed: c.refreshed.load(Ordering::Relaxed),
                    verify_skipped: c.verify_skipped.load(Ordering::Relaxed),
                    last_verify_failure: w
                        .last_verify_failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                    busy,
                    last_error: w
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                }
            })
            .collect()
    }
}

/// Counters of one backend since the purger started.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendStats {
    /// The backend's name.
    pub backend: String,
    /// Targets not yet delivered nor given up on: waiting, in flight or waiting for a retry
    /// (the queue depth).
    pub queued: u64,
    /// Of `queued`, the targets waiting for a retry.
    pub retrying: u64,
    /// Targets purged.
    pub purged: u64,
    /// Failed attempts (a target that fails three times counts three).
    pub failed: u64,
    /// Retries made.
    pub retried: u64,
    /// Targets given up on (see [`Purger::dead_letters`]).
    pub dead: u64,
    /// Dead letters forgotten because the list was full.
    pub dead_evicted: u64,
    /// Targets replaced by one "purge everything" because the queue was full and
    /// `when_full = "coalesce"`.
    pub coalesced: u64,
    /// Targets that will never be delivered: purged after [`Purger::shutdown`], or lost from
    /// a damaged spill file. A full queue never drops.
    pub dropped: u64,
    /// Targets written to the spill file because the queue was full (since the start).
    pub spilled: u64,
    /// Of `queued`, the targets in the spill file now.
    pub in_spill: u64,
    /// The most targets this backend held in memory at once: at most about `queue_capacity`
    /// (the rest spills), whatever the size of the purges.
    pub peak_in_memory: u64,
    /// Of `queued`, the second purges (`repurge_after`) not due yet.
    pub repurging: u64,
    /// Second purges sent.
    pub repurged: u64,
    /// Mean time of one purge call.
    pub mean_latency: Duration,
    /// Purge calls made.
    pub batches: u64,
    /// Targets skipped because the backend cannot purge their kind.
    pub unsupported: u64,
    /// Targets dropped because the same target was already waiting.
    pub deduplicated: u64,
    /// Purged URLs that verification found gone from the cache (`verify`; see
    /// [`crate::verify`]).
    pub verified: u64,
    /// Purged URLs the cache still served after the purge and a second one: a purge that did
    /// not take (see [`last_verify_failure`](Self::last_verify_failure)).
    pub verify_failed: u64,
    /// Verification checks the cache did not answer (counted neither way).
    pub verify_unanswered: u64,
    /// Purged URLs requested again through the cache to warm it (`refresh`).
    pub refreshed: u64,
    /// Purged URLs neither verified nor refreshed because this backend's checks of earlier
    /// purges were still running: at most 10,000 URLs wait for their check, so that memory
    /// stays bounded and no purge waits for one.
    pub verify_skipped: u64,
    /// The last purge that did not take, with what to check.
    pub last_verify_failure: Option<crate::verify::VerifyFailure>,
    /// Time spent in purge calls (summed over concurrent calls).
    pub busy: Duration,
    /// The last failure of a purge call, if any failed: match its
    /// [`cause`](crate::backend::PurgeError::cause) to tell why targets are still queued.
    pub last_error: Option<crate::backend::PurgeError>,
}

/// One outbox worker task's claim cycles, counted for read-your-writes: call
/// [`completed`](Self::completed) after each cycle (a claim, and the delivery of what it
/// claimed, if anything). Dropping it tells the watches waiting on it that no more cycles come.
#[derive(Debug)]
pub struct OutboxRounds {
    round: Arc<tokio::sync::watch::Sender<u64>>,
}

impl OutboxRounds {
    /// One more cycle done.
    pub fn completed(&self) {
        self.round.send_modify(|r| *r += 1);
    }
}

/// Where a write's targets go: see [`Purger::route`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// Hand them to [`Purger::purge`] once the write has committed.
    Queue,
    /// Write them as outbox rows, one per backend, through the write's own connection.
    Outbox {
        /// The backends to write a row for, by name.
        backends: Vec<String>,
        /// When set, write the rows a second time, due this much later (the delayed second
        /// purge, [`PurgerBuilder::repurge_after`]).
        repurge_after: Option<Duration>,
    },
}
