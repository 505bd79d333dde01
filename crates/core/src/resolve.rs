//! Resolving an entity to the targets its change must purge.
//!
//! Three ways to declare them, all ending in [`PurgeTargets`]:
//!
//! 1. URL templates: `#[derive(CachePurge)] #[cache_purge(url = "/posts/{slug}", url = "/")]`.
//! 2. A resolver function of the model: `#[cache_purge(resolver = path::to::fn)]`.
//! 3. A resolver registered at run time, for URLs that need application state:
//!    `#[cache_purge(registered)]` on the model and [`register`](registry::register) at start-up.
//!
//! ```
//! use cache_purge_hooks_core::{registry, PurgeTargets, Targets};
//!
//! struct Comment { post_slug: String, id: i64 }
//!
//! // What `#[derive(CachePurge)] #[cache_purge(registered)]` writes:
//! impl PurgeTargets for Comment {
//!     fn purge_targets(&self, targets: &mut Targets) {
//!         registry::resolve_into(self, targets);
//!     }
//! }
//!
//! let base = String::from("https://blog.example");
//! registry::register::<Comment, _, _>(move |c: &Comment| {
//!     vec![format!("{base}/posts/{}#comment-{}", c.post_slug, c.id)]
//! })
//! .unwrap();
//!
//! let c = Comment { post_slug: "hello".into(), id: 7 };
//! assert_eq!(c.resolve_targets().urls(), ["https://blog.example/posts/hello"]);
//! // Registering twice is an error, never silently ignored:
//! assert!(registry::register::<Comment, _, Vec<String>>(|_| vec![]).is_err());
//! # registry::unregister::<Comment>();
//! ```

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::target::{IntoTarget, InvalidTarget, Targets};

/// The purge targets of an entity: implemented by `#[derive(CachePurge)]`, or by hand.
pub trait PurgeTargets {
    /// The names of the fields the targets are computed from, or `None` when unknown (a
    /// resolver function may read any field).
    ///
    /// The ORM integrations use it to decide whether an update can change the URLs: when no
    /// listed field is written, the old row need not be loaded to purge its old URLs.
    const URL_FIELDS: Option<&'static [&'static str]> = None;

    /// The tags of every *list* of this type (`#[cache_purge(list_tag = "posts")]`): purged by
    /// every save, like the other tags, but carried only by the pages that list such values
    /// (the home page, `/?page=7`), never by a value's own page.
    ///
    /// A response that shows one value tags itself with that value's tags minus these (what
    /// `CacheTags::add` of the tower crate does), so that saving one post purges every list
    /// and that post's page, not every other post's page too. A list page adds them whether
    /// it shows any value or none (`CacheTags::add_list`), so that the first new value
    /// purges an empty list. Each is a valid tag (the derive checks it at compile time).
    const LIST_TAGS: &'static [&'static str] = &[];

    /// Adds this value's targets.
    fn purge_targets(&self, targets: &mut Targets);

    /// This value's targets, collected into a new [`Targets`].
    fn resolve_targets(&self) -> Targets {
        let mut t = Targets::new();
        self.purge_targets(&mut t);
        t
    }
}

/// The runtime registry of resolver functions (the seed's `cache_purge_hook(Model, func)`).
pub mod registry {
    use super::*;

    type ErasedResolver = Arc<dyn Fn(&dyn Any, &mut Targets) + Send + Sync>;

    fn map() -> &'static RwLock<HashMap<TypeId, ErasedResolver>> {
        static MAP: OnceLock<RwLock<HashMap<TypeId, ErasedResolver>>> = OnceLock::new();
        MAP.get_or_init(Default::default)
    }

    /// A resolver was already registered for this type.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error(
        "a cache purge resolver is already registered for `{type_name}`; \
         call `registry::replace` to swap it deliberately"
    )]
    pub struct AlreadyRegistered {
        /// The type's name.
        pub type_name: &'static str,
    }

    fn erase<M, F, I>(resolver: F) -> ErasedResolver
    where
        M: 'static,
        F: Fn(&M) -> I + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: IntoTarget,
    {
        Arc::new(move |any: &dyn Any, out: &mut Targets| {
            if let Some(m) = any.downcast_ref::<M>() {
                out.extend_any(resolver(m));
            }
        })
    }

    /// Registers the resolver for `M`. Fails if one is registered already.
    ///
    /// The function returns any iterable of targets (a `Vec<String>`, an array of `&str`, an
    /// `Option<String>`...). A bare `String` does not compile: it is not a list.
    pub fn register<M, F, I>(resolver: F) -> Result<(), AlreadyRegistered>
    where
        M: 'static,
        F: Fn(&M) -> I + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: IntoTarget,
    {
        let mut map = map().write().unwrap_or_else(|p| p.into_inner());
        match map.entry(TypeId::of::<M>()) {
            std::collections::hash_map::Entry::Occupied(_) => Err(AlreadyRegistered {
                type_name: type_name::<M>(),
            }),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(erase(resolver));
                Ok(())
            }
        }
    }

    /// Registers the resolver for `M`, replacing any earlier one. Returns whether one was
    /// replaced.
    pub fn replace<M, F, I>(resolver: F) -> bool
    where
        M: 'static,
        F: Fn(&M) -> I + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: IntoTarget,
    {
        let mut map = map().write().unwrap_or_else(|p| p.into_inner());
        map.insert(TypeId::of::<M>(), erase(resolver)).is_some()
    }

    /// Removes the resolver for `M`. Returns whether there was one.
    pub fn unregister<M: 'static>() -> bool {
        let mut map = map().write().unwrap_or_else(|p| p.into_inner());
        map.remove(&TypeId::of::<M>()).is_some()
    }

    /// Whether a resolver is registered for `M`.
    pub fn is_registered<M: 'static>() -> bool {
        let map = map().read().unwrap_or_else(|p| p.into_inner());
        map.contains_key(&TypeId::of::<M>())
    }

    /// Adds the targets of the resolver registered for `M`. With none registered, records a
    /// rejection naming the type, so the pipeline logs it instead of purging nothing silently.
    pub fn resolve_into<M: 'static>(value: &M, targets: &mut Targets) {
        let resolver = {
            let map = map().read().unwrap_or_else(|p| p.into_inner());
            map.get(&TypeId::of::<M>()).cloned()
        };
        match resolver {
            Some(r) => r(value, targets),
            None => targets.reject(InvalidTarget {
                input: type_name::<M>().to_owned(),
                reason: "no cache purge resolver is registered for this type \
                         (call cache_purge_hooks::registry::register at start-up)",
            }),
        }
    }
}
