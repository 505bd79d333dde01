//! Tagging responses: the response side of cache tags.
//!
//! A save purges tags (`#[cache_purge(tag = "post:{id}", list_tag = "posts")]`); a cache can
//! only purge by a tag the pages were stored with. [`CacheTagsLayer`] gives every request a
//! fresh [`CacheTags`], the handler adds what it rendered — [`CacheTags::add`] takes the tags
//! of any entity, so the derive's templates name the tags on both sides, and
//! [`CacheTags::add_list`] the list tags of a page that lists a type — and the layer writes
//! them into the response in each header format the caches in front read ([`TagHeader`]).
//!
//! ```
//! use axum::{extract::Path, routing::get, Extension, Router};
//! use cache_purge_hooks_engine::{PurgeTargets, Tag, Targets};
//! use cache_purge_hooks_tower::{CacheTags, CacheTagsLayer, ReadYourWritesLayer, TagHeader, BAN_HEADER};
//!
//! struct Post { id: i64 }
//!
//! // What `#[derive(CachePurge)] #[cache_purge(tag = "post:{id}", list_tag = "posts")]`
//! // writes: a save purges both; a page showing the post carries only `post:{id}`.
//! impl PurgeTargets for Post {
//!     const LIST_TAGS: &'static [&'static str] = &["posts"];
//!
//!     fn purge_targets(&self, targets: &mut Targets) {
//!         targets.push_any(Tag::parse(&format!("post:{}", self.id)));
//!         targets.push_any(Tag::parse("posts"));
//!     }
//! }
//!
//! async fn show(Path(id): Path<i64>, Extension(tags): Extension<CacheTags>) -> String {
//!     let post = Post { id }; // ... loaded from the database ...
//!     tags.add(&post);
//!     format!("post {}", post.id)
//! }
//!
//! async fn list(Extension(tags): Extension<CacheTags>) -> String {
//!     let posts = [Post { id: 7 }, Post { id: 8 }]; // ... a page of them ...
//!     tags.add_list::<Post>();
//!     posts.iter().for_each(|post| tags.add(post));
//!     "posts 7, 8".to_owned()
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(list))
//!     .route("/posts/{id}", get(show))
//!     .layer(ReadYourWritesLayer::new())
//!     .layer(CacheTagsLayer::new(TagHeader::xkey()).header(TagHeader::ban_header(BAN_HEADER)));
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use tower::ServiceExt;
//! let request = axum::http::Request::get("/posts/7").body(axum::body::Body::empty()).unwrap();
//! let response = app.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.headers()["xkey"], "post:7");
//! assert_eq!(response.headers()["x-cache-tags"], "post:7");
//! let request = axum::http::Request::get("/").body(axum::body::Body::empty()).unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.headers()["xkey"], "posts post:7 post:8");
//! # });
//! ```
//!
//! With the crate's `axum` feature (on through the `cache-purge-hooks` facade's `tower`
//! feature), a handler can also take `tags: CacheTags` directly; without the layer, that
//! extraction answers `500` naming [`CacheTagsLayer`] (the rejection `MissingCacheTagsLayer`).
//!
//! # Formats and their limits
//!
//! | format | header | separator | limit | over the limit |
//! |---|---|---|---|---|
//! | [`TagHeader::xkey`] | `xkey` | space | 4096 bytes a line | more lines |
//! | [`TagHeader::ban_header`] | yours (`x-cache-tags`) | space | 4096 bytes a line | more lines |
//! | [`TagHeader::surrogate_key`] | `Surrogate-Key` | space | 16,384 bytes, 1024 a key | dropped, logged |
//! | [`TagHeader::cache_tag`] | `Cache-Tag` | comma | 16,000 bytes | dropped, logged |
//! | [`TagHeader::edge_cache_tag`] | `Edge-Cache-Tag` | comma | 128 tags of 128 characters, 8192 bytes | dropped, logged |
//!
//! The sources are on each constructor. [`TagHeader::custom`] takes any other
//! [`TagLimits`].
//!
//! # Fitting the limits
//!
//! Nothing is dropped silently:
//!
//! 1. **A tag too long for a format** (or holding a character it refuses) is written as its
//!    deterministic stand-in, [`Tag::fitted`] (for length alone [`Tag::shortened`]): a prefix,
//!    `~` and a 128-bit digest of the whole tag. A purger for that cache must purge the same
//!    stand-in: [`TagHeader::written_form`] says what a format writes for a tag.
//! 2. **Line formats** (xkey, the ban header) never drop a tag: they split into as many
//!    header lines as needed, each at most 4096 bytes (Varnish's xkey vmod reads every `xkey`
//!    line; a VCL that bans on the header joins its lines into one first, with `std.collect`
//!    in `vcl_backend_response`).
//! 3. **Single-header formats** (Fastly, Cloudflare, Akamai) hold what fits, in the order
//!    the tags were added (a later, shorter tag may still fit after a longer one did not).
//!    If the whole set does not fit and a **fallback** tag was declared
//!    ([`TagHeader::fallback`], or [`CacheTagsLayer::fallback`] for every format) — a
//!    coarse tag such as `site` that every save purges as well — it is written first and the
//!    rest fill the room left; with or without one, a `WARN` on target `cache_purge_hooks`
//!    names the request URI, the header and how many tags were dropped. Without a fallback,
//!    the page is stale after a change to a dropped tag's entity until it expires: declare
//!    one, or tag fewer things.
//!
//! # Which responses
//!
//! Every response whose request collected at least one tag, whatever its status; a response
//! with no tag gets no tag header. A header the handler set itself is kept: its tags come
//! first and the collected ones are merged in (duplicates removed), and the result is fitted
//! as above. The tags are the caches' business: Fastly, Cloudflare and Akamai strip their
//! header before answering; in Varnish, `unset resp.http.xkey;` (and the ban header, which
//! must stay on the stored object for bans to match it) in `vcl_deliver`.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use std::time::Duration;

use cache_purge_hooks_engine::tag_index::lifetime_of;
use cache_purge_hooks_engine::{InvalidTarget, PurgeTargets, PurgeUrl, Tag, TagIndex, Target};
use http::header::{HeaderName, HeaderValue};
use tower_layer::Layer;
use tower_service::Service;

/// The header name suggested for [`TagHeader::ban_header`]: `x-cache-tags`.
pub const BAN_HEADER: HeaderName = HeaderName::from_static("x-cache-tags");

/// The tags of what a request rendered: a cheap handle (clones share one set).
///
/// [`CacheTagsLayer`] puts a fresh one in each request's extensions; a handler takes it as
/// `axum::Extension<CacheTags>` (or, with the `axum` feature, as `CacheTags`) and adds to it.
/// Tags are kept once each, in the order first added.
///
/// ```
/// use cache_purge_hooks_engine::Tag;
/// use cache_purge_hooks_tower::CacheTags;
///
/// let tags = CacheTags::new();
/// tags.add_str("posts").unwrap();
/// tags.add_tag(Tag::parse("post:1").unwrap());
/// tags.extend([Tag::parse("posts").unwrap(), Tag::parse("post:2").unwrap()]);
/// assert!(tags.add_str("not a tag").is_err());
/// let names: Vec<String> = tags.tags().iter().map(ToString::to_string).collect();
/// assert_eq!(names, ["posts", "post:1", "post:2"]);
/// ```
#[derive(Clone, Default)]
pub struct CacheTags {
    inner: Arc<Mutex<TagSet>>,
}

#[derive(Default)]
struct TagSet {
    tags: Vec<Tag>,
    seen: HashSet<Tag>,
}

impl TagSet {
    fn push(&mut self, tag: Tag) {
        if self.seen.insert(tag.clone()) {
            self.tags.push(tag);
        }
    }
}

impl CacheTags {
    /// An empty set (the layer makes one per request; this is for tests and other stacks).
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut TagSet) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Adds the tags of a page that shows `entity`: every tag it resolves to
    /// ([`Target::Tag`]s of [`PurgeTargets::resolve_targets`], the tags its saves purge)
    /// except its type's list tags ([`PurgeTargets::LIST_TAGS`],
    /// `#[cache_purge(list_tag = "posts")]`), which only list pages carry
    /// ([`add_list`](Self::add_list)). Its URLs and other targets are ignored; rejected
    /// targets are the save path's to report.
    ///
    /// So a post's page tagged with `tags.add(&post)` is purged when that post is saved, not
    /// when any post is.
    pub fn add<T: PurgeTargets + ?Sized>(&self, entity: &T) {
        let targets = entity.resolve_targets();
        self.with(|set| {
            for target in targets {
                if let Target::Tag(tag) = target
                    && !T::LIST_TAGS.contains(&tag.as_str())
                {
                    set.push(tag);
                }
            }
        });
    }

    /// Adds the list tags of `T` ([`PurgeTargets::LIST_TAGS`]): for a page that lists values
    /// of `T` (the home page, `/?page=7`, a search), so that saving any of them — a new one
    /// too — purges it. Add it whether the page shows values or none, and
    /// [`add`](Self::add) each value it shows.
    ///
    /// ```
    /// # mod cache_purge_hooks { pub use cache_purge_hooks_engine::*; pub use cache_purge_hooks_macros::CachePurge; pub use cache_purge_hooks_tower as tower; }
    /// use cache_purge_hooks::CachePurge;
    /// use cache_purge_hooks::tower::CacheTags;
    ///
    /// #[derive(CachePurge)]
    /// #[cache_purge(url = "/posts/{slug}", tag = "post:{slug}", list_tag = "posts")]
    /// struct Post { slug: String }
    ///
    /// let post = Post { slug: "hello".into() };
    /// let post_page = CacheTags::new();
    /// post_page.add(&post);
    /// assert_eq!(post_page.tags().iter().map(|t| t.as_str()).collect::<Vec<_>>(), ["post:hello"]);
    ///
    /// let home = CacheTags::new();
    /// home.add_list::<Post>();
    /// home.add(&post);
    /// assert_eq!(home.tags().iter().map(|t| t.as_str()).collect::<Vec<_>>(), ["posts", "post:hello"]);
    /// ```
    pub fn add_list<T: PurgeTargets + ?Sized>(&self) {
        self.with(|set| {
            for text in T::LIST_TAGS {
                match Tag::parse(text) {
                    Ok(tag) => set.push(tag),
                    // Only a hand-written impl can get here (the derive checks list tags).
                    Err(e) => tracing::error!(
                        tag = %text,
                        error = %e,
                        "a list tag of `{}` is not a valid tag; the page is not tagged with it",
                        std::any::type_name::<T>()
                    ),
                }
            }
        });
    }

    /// Adds one tag.
    pub fn add_tag(&self, tag: Tag) {
        self.with(|set| set.push(tag));
    }

    /// Adds a tag given as text, if it is a valid [`Tag`].
    pub fn add_str(&self, tag: &str) -> Result<(), InvalidTarget> {
        let tag = Tag::parse(tag)?;
        self.add_tag(tag);
        Ok(())
    }

    /// Adds every tag of an iterator.
    pub fn extend(&self, tags: impl IntoIterator<Item = Tag>) {
        self.with(|set| tags.into_iter().for_each(|t| set.push(t)));
    }

    /// The tags so far, in the order first added.
    pub fn tags(&self) -> Vec<Tag> {
        self.with(|set| set.tags.clone())
    }

    /// How many tags there are.
    pub fn len(&self) -> usize {
        self.with(|set| set.tags.len())
    }

    /// Whether no tag was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for CacheTags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with(|set| f.debug_list().entries(&set.tags).finish())
    }
}

impl Extend<Tag> for CacheTags {
    fn extend<I: IntoIterator<Item = Tag>>(&mut self, iter: I) {
        CacheTags::extend(self, iter);
    }
}

/// Which bytes a format accepts in a tag (beyond what every [`Tag`] is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TagCharset {
    /// Every tag as it is: visible ASCII other than `,`, `"` and `\`.
    #[default]
    Any,
    /// Akamai's cache tag characters: letters, digits and ``!#$%'+.^_`|~-`` (what both
    /// Akamai's "Cache tag requirements" table and its Property Manager `cacheTag` behavior
    /// allow; `:`, `/`, `=`, `@` and the like are refused).
    Akamai,
}

impl TagCharset {
    /// Whether a tag byte is accepted as it is.
    pub fn allows(self, b: u8) -> bool {
        match self {
            Self::Any => true,
            Self::Akamai => Tag::akamai_allows(b),
        }
    }
}

/// What separates the tags in a header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagSeparator {
    /// One space (`a b c`): xkey, Varnish ban headers, Fastly.
    Space,
    /// One comma, no space (`a,b,c`): Cloudflare, Akamai.
    Comma,
}

impl TagSeparator {
    fn as_str(self) -> &'static str {
        match self {
            Self::Space => " ",
            Self::Comma => ",",
        }
    }

    fn split(self, value: &str) -> impl Iterator<Item = &str> {
        let separator = match self {
            Self::Space => ' ',
            Self::Comma => ',',
        };
        value
            .split(move |c: char| c == separator || c.is_ascii_whitespace())
            .filter(|token| !token.is_empty())
    }
}

/// The limits of one tag header format.
///
/// Lengths are bytes of the header value (tags are ASCII: a byte is a character). Values too
/// small to hold a tag are raised: `max_tag_bytes` to at least 33 (a [`Tag::shortened`]
/// stand-in is never shorter) and `max_header_bytes` to at least `max_tag_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagLimits {
    /// The longest header value: of each line when `split_into_lines`, else of the one line.
    pub max_header_bytes: usize,
    /// The longest tag; longer ones are written as [`Tag::shortened`] (or [`Tag::fitted`])
    /// stand-ins of this length.
    pub max_tag_bytes: usize,
    /// The most tags a response may carry, if the cache counts them.
    pub max_tags: Option<usize>,
    /// Whether the cache reads several lines of the header, so that a long set is split into
    /// lines rather than cut.
    pub split_into_lines: bool,
    /// The characters the cache accepts in a tag; a tag with others is written as its
    /// [`Tag::fitted`] stand-in.
    pub charset: TagCharset,
}

impl TagLimits {
    /// Lines of at most `max_line_bytes` each, as many as needed: never drops a tag.
    pub const fn lines(max_line_bytes: usize) -> Self {
        Self {
            max_header_bytes: max_line_bytes,
            max_tag_bytes: 1024,
            max_tags: None,
            split_into_lines: true,
            charset: TagCharset::Any,
        }
    }

    /// One header of at most `max_header_bytes`: what does not fit is dropped (and logged).
    pub const fn single(max_header_bytes: usize) -> Self {
        Self {
            max_header_bytes,
            max_tag_bytes: 1024,
            max_tags: None,
            split_into_lines: false,
            charset: TagCharset::Any,
        }
    }

    /// Varnish's xkey vmod, and ban headers: lines of 4096 bytes.
    pub const VARNISH: TagLimits = TagLimits::lines(4096);

    /// Fastly's `Surrogate-Key`: 16,384 bytes in all, 1024 bytes a key.
    pub const FASTLY: TagLimits = TagLimits::single(16_384);

    /// Cloudflare's `Cache-Tag`: 16 KB in all, counted as 16,000 bytes.
    pub const CLOUDFLARE: TagLimits = TagLimits::single(16_000);

    /// Akamai's `Edge-Cache-Tag`: 128 tags of at most 128 characters, of Akamai's
    /// [`TagCharset::Akamai`], in at most 8192 bytes.
    pub const AKAMAI: TagLimits = TagLimits {
        max_header_bytes: 8192,
        max_tag_bytes: 128,
        max_tags: Some(128),
        split_into_lines: false,
        charset: TagCharset::Akamai,
    };

    fn normalized(self) -> Self {
        let max_tag_bytes = self.max_tag_bytes.clamp(33, 1024);
        Self {
            max_tag_bytes,
            max_header_bytes: self.max_header_bytes.max(max_tag_bytes),
            ..self
        }
    }
}

/// One way of writing tags into a response: a header name, a separator and [`TagLimits`].
#[derive(Clone, Debug)]
pub struct TagHeader {
    name: HeaderName,
    separator: TagSeparator,
    limits: TagLimits,
    fallback: Option<Tag>,
}

/// The header lines a [`TagHeader`] writes for a set of tags, and what did not fit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderedTags {
    /// The header values, one per header line (empty when there is no tag).
    pub lines: Vec<String>,
    /// How many tags were written (a fallback included).
    pub written: usize,
    /// The tags (in their written form) that did not fit.
    pub dropped: Vec<Tag>,
    /// Whether the fallback tag was written because tags were dropped.
    pub fallback_used: bool,
}

impl TagHeader {
    /// Varnish's [xkey vmod](https://github.com/varnish/varnish-modules/blob/master/src/vmod_xkey.vcc):
    /// header `xkey`, tags separated by spaces, in lines of at most 4096 bytes.
    ///
    /// xkey indexes the keys of every `xkey` line of a response, so a long set is split and
    /// never cut. 4096 bytes is FOSHttpCache's split (`MaxHeaderValueLengthFormatter`,
    /// "most servers limit header values to 4kb"), well inside Varnish's default
    /// `http_resp_hdr_len` of 8 KB.
    pub fn xkey() -> Self {
        Self::custom(
            HeaderName::from_static("xkey"),
            TagSeparator::Space,
            TagLimits::VARNISH,
        )
    }

    /// Stock Varnish's ban-on-header tagging: a header of your naming ([`BAN_HEADER`],
    /// `x-cache-tags`, is the suggestion), tags separated by spaces, in lines of at most 4096
    /// bytes (as [`xkey`](Self::xkey)). The VCL that bans by it joins the lines into one
    /// (`std.collect` in `vcl_backend_response`) so that a ban's regex sees every tag.
    pub fn ban_header(name: HeaderName) -> Self {
        Self::custom(name, TagSeparator::Space, TagLimits::VARNISH)
    }

    /// Fastly's [`Surrogate-Key`](https://www.fastly.com/documentation/reference/http/http-headers/Surrogate-Key/):
    /// tags separated by spaces in one header of at most 16,384 bytes, each at most 1024
    /// bytes.
    ///
    /// Fastly: "Individual keys are limited to 1024 bytes in length, and the total length of
    /// the Surrogate-Key header may not exceed 16,384 bytes. If either of these limits are
    /// reached while parsing a Surrogate-Key header, the key currently being parsed and all
    /// keys following it within the same header will be ignored" (see also its [VCL
    /// constraints](https://www.fastly.com/documentation/reference/vcl/constraints-and-limitations/)).
    pub fn surrogate_key() -> Self {
        Self::custom(
            HeaderName::from_static("surrogate-key"),
            TagSeparator::Space,
            TagLimits::FASTLY,
        )
    }

    /// Cloudflare's [`Cache-Tag`](https://developers.cloudflare.com/cache/how-to/purge-cache/purge-by-tags/):
    /// tags separated by commas in one header of at most 16,000 bytes.
    ///
    /// Cloudflare: "Individual tags do not have a maximum length, but the aggregate
    /// `Cache-Tag` HTTP header cannot exceed 16 KB after the header field name, which is
    /// approximately 1,000 unique tags"; "16 KB" is read as 16,000 bytes so that either
    /// meaning holds. A tag is at most 1024 bytes here (the longest [`Tag`]).
    pub fn cache_tag() -> Self {
        Self::custom(
            HeaderName::from_static("cache-tag"),
            TagSeparator::Comma,
            TagLimits::CLOUDFLARE,
        )
    }

    /// Akamai's [`Edge-Cache-Tag`](https://techdocs.akamai.com/purge-cache/docs/assign-cache-tags):
    /// at most 128 tags separated by commas in one header, each at most 128 characters of
    /// [`TagCharset::Akamai`].
    ///
    /// Akamai: "specify a single header with up to 128 comma-delimited values. If you add
    /// more headers for the same content, only the first one is respected"; "A single tag
    /// can't exceed 128 characters"; "The maximum number of tags per cached object is 128.
    /// Any additional tags are ignored" ([cache tag
    /// requirements](https://techdocs.akamai.com/purge-cache/docs/purge-content-cache-tag),
    /// which also refuse `:`, `/`, `=`, `@` and others and note a default reply header size
    /// of 8192 bytes, hence the 8192-byte bound). A tag such as `post:1` is written as its
    /// [`Tag::fitted`] stand-in `post_1~<digest>`.
    pub fn edge_cache_tag() -> Self {
        Self::custom(
            HeaderName::from_static("edge-cache-tag"),
            TagSeparator::Comma,
            TagLimits::AKAMAI,
        )
    }

    /// Any other format.
    pub fn custom(name: HeaderName, separator: TagSeparator, limits: TagLimits) -> Self {
        Self {
            name,
            separator,
            limits,
            fallback: None,
        }
    }

    /// The tag written, with what fits, when not every tag fits in this header: a coarser
    /// tag that every save also purges (`site`, say), so that a change to a dropped tag's
    /// entity still reaches the page. It overrides [`CacheTagsLayer::fallback`].
    pub fn fallback(mut self, tag: Tag) -> Self {
        self.fallback = Some(tag);
        self
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The separator of tags.
    pub fn separator(&self) -> TagSeparator {
        self.separator
    }

    /// The limits.
    pub fn limits(&self) -> TagLimits {
        self.limits
    }

    /// The fallback tag declared on this header, if any.
    pub fn fallback_tag(&self) -> Option<&Tag> {
        self.fallback.as_ref()
    }

    /// What this format writes for `tag`: the tag itself, or its [`Tag::fitted`] stand-in
    /// when it is too long or holds a character the format refuses. A purger for this cache
    /// purges this form.
    ///
    /// ```
    /// use cache_purge_hooks_engine::Tag;
    /// use cache_purge_hooks_tower::TagHeader;
    ///
    /// let tag = Tag::parse("post:1").unwrap();
    /// assert_eq!(TagHeader::xkey().written_form(&tag), tag);
    /// assert!(TagHeader::edge_cache_tag().written_form(&tag).as_str().starts_with("post_1~"));
    /// ```
    pub fn written_form(&self, tag: &Tag) -> Tag {
        let limits = self.limits.normalized();
        tag.fitted(limits.max_tag_bytes, |b| limits.charset.allows(b))
    }

    /// The header lines for `tags` (in order, duplicates removed), fitted to the limits as
    /// the [module documentation](self) says, with this header's fallback or else
    /// `default_fallback`.
    pub fn render<'t>(
        &self,
        tags: impl IntoIterator<Item = &'t Tag>,
        default_fallback: Option<&Tag>,
    ) -> RenderedTags {
        let limits = self.limits.normalized();
        let mut seen = HashSet::new();
        let tags: Vec<Tag> = tags
            .into_iter()
            .map(|t| self.written_form(t))
            .filter(|t| seen.insert(t.clone()))
            .collect();
        let sep = self.separator.as_str().len();
        let total: usize = tags.iter().map(|t| t.as_str().len() + sep).sum::<usize>();
        let total = total.saturating_sub(sep);
        let fits = limits.max_tags.is_none_or(|max| tags.len() <= max)
            && (limits.split_into_lines || total <= limits.max_header_bytes);
        if fits {
            return RenderedTags {
                lines: self.pack(&tags, &limits),
                written: tags.len(),
                dropped: Vec::new(),
                fallback_used: false,
            };
        }
        let fallback = self
            .fallback
            .as_ref()
            .or(default_fallback)
            .map(|t| self.written_form(t));
        let mut kept: Vec<Tag> = Vec::with_capacity(tags.len());
        let mut dropped = Vec::new();
        let mut used = 0usize;
        if let Some(fallback) = &fallback {
            used = fallback.as_str().len();
            kept.push(fallback.clone());
        }
        for tag in tags {
            if fallback.as_ref() == Some(&tag) {
                continue;
            }
            let cost = if kept.is_empty() { 0 } else { sep } + tag.as_str().len();
            let count_ok = limits.max_tags.is_none_or(|max| kept.len() < max);
            let bytes_ok = limits.split_into_lines || used + cost <= limits.max_header_bytes;
            if count_ok && bytes_ok {
                used += cost;
                kept.push(tag);
            } else {
                dropped.push(tag);
            }
        }
        RenderedTags {
            lines: self.pack(&kept, &limits),
            written: kept.len(),
            dropped,
            fallback_used: fallback.is_some(),
        }
    }

    /// Joins tags into one line, or into lines of at most `max_header_bytes`.
    fn pack(&self, tags: &[Tag], limits: &TagLimits) -> Vec<String> {
        let sep = self.separator.as_str();
        let mut lines: Vec<String> = Vec::new();
        let mut line = String::new();
        for tag in tags {
            let tag = tag.as_str();
            if !line.is_empty() {
                if limits.split_into_lines
                    && line.len() + sep.len() + tag.len() > limits.max_header_bytes
                {
                    lines.push(std::mem::take(&mut line));
                } else {
                    line.push_str(sep);
                }
            }
            line.push_str(tag);
        }
        if !line.is_empty() {
            lines.push(line);
        }
        lines
    }
}

/// Gives each request a [`CacheTags`] and writes what the handler collected into the
/// response, in each configured [`TagHeader`] format; see the [module documentation](self).
///
/// There is no format by default: a layer that wrote none would tag nothing, so the
/// constructor takes the first one.
#[derive(Clone)]
pub struct CacheTagsLayer {
    headers: Vec<TagHeader>,
    fallback: Option<Tag>,
    index: Option<RecordInto>,
}

/// Where [`CacheTagsLayer::record_into`] records the tags of each response.
#[derive(Clone)]
struct RecordInto {
    index: Arc<dyn TagIndex>,
    default_lifetime: Duration,
}

impl fmt::Debug for CacheTagsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheTagsLayer")
            .field("headers", &self.headers)
            .field("fallback", &self.fallback)
            .field(
                "record_into",
                &self.index.as_ref().map(|r| r.default_lifetime),
            )
            .finish()
    }
}

/// The response header that tells nginx not to cache a response, whatever its
/// `Cache-Control`: set when its tags could not be recorded in the tag index.
pub const X_ACCEL_EXPIRES: HeaderName = HeaderName::from_static("x-accel-expires");

impl CacheTagsLayer {
    /// A layer writing tags in the `first` format (add others with [`header`](Self::header)).
    pub fn new(first: TagHeader) -> Self {
        Self {
            headers: vec![first],
            fallback: None,
            index: None,
        }
    }

    /// Also records each tagged response's URL and tags in `index` (the tag→URL index that
    /// nginx's `tags = "index"` purges through; [`Purger::tag_index`] gives the configured
    /// one), for as long as the response may stay cached: its `s-maxage` or `max-age`, else
    /// `default_lifetime` (set it to at least your `proxy_cache_valid`). Responses that
    /// `no-store`, `private` or `no-cache` say nginx will not cache are not recorded.
    ///
    /// The entry is written before the response leaves, so no cache can hold a page the index
    /// does not know yet. When it cannot be written (the index is down, or a tag holds its
    /// most URLs), the response gets `X-Accel-Expires: 0`, which keeps it out of nginx's
    /// cache, and a WARN names the URL: a page the index does not know could never be purged
    /// by tag, so it must not be cached.
    ///
    /// [`Purger::tag_index`]: cache_purge_hooks_engine::Purger::tag_index
    pub fn record_into(mut self, index: Arc<dyn TagIndex>, default_lifetime: Duration) -> Self {
        self.index = Some(RecordInto {
            index,
            default_lifetime,
        });
        self
    }

    /// Also writes the tags in this format.
    pub fn header(mut self, format: TagHeader) -> Self {
        self.headers.push(format);
        self
    }

    /// The fallback tag of every format that declares none ([`TagHeader::fallback`]).
    pub fn fallback(mut self, tag: Tag) -> Self {
        self.fallback = Some(tag);
        self
    }
}

impl<S> Layer<S> for CacheTagsLayer {
    type Service = CacheTagsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheTagsService {
            inner,
            config: Arc::new(self.clone()),
        }
    }
}

/// The service of [`CacheTagsLayer`].
#[derive(Clone)]
pub struct CacheTagsService<S> {
    inner: S,
    config: Arc<CacheTagsLayer>,
}

impl<S, B, ResBody> Service<http::Request<B>> for CacheTagsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // A layer nested in another shares the outer one's set.
        let tags = match request.extensions().get::<CacheTags>() {
            Some(tags) => tags.clone(),
            None => {
                let tags = CacheTags::new();
                request.extensions_mut().insert(tags.clone());
                tags
            }
        };
        let uri = request.uri().clone();
        let config = Arc::clone(&self.config);
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            let collected = tags.tags();
            if !collected.is_empty() {
                for format in &config.headers {
                    write_header(&mut response, format, &collected, &config, &uri);
                }
                if let Some(record) = &config.index {
                    record_response(record, &mut response, &collected, &uri).await;
                }
            }
            Ok(response)
        })
    }
}

impl<S: fmt::Debug> fmt::Debug for CacheTagsService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheTagsService")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

/// Records the response's URL under its tags, or keeps it out of nginx's cache when that
/// fails.
async fn record_response<ResBody>(
    record: &RecordInto,
    response: &mut http::Response<ResBody>,
    tags: &[Tag],
    uri: &http::Uri,
) {
    let cache_control = response
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok());
    let Some(lifetime) = lifetime_of(cache_control, record.default_lifetime) else {
        return;
    };
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let result = match PurgeUrl::parse(target) {
        Ok(url) => record
            .index
            .record(&url, tags, lifetime)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = result {
        response
            .headers_mut()
            .insert(X_ACCEL_EXPIRES, HeaderValue::from_static("0"));
        tracing::warn!(
            target: "cache_purge_hooks",
            uri = %uri,
            %error,
            "the response's tags could not be recorded in the tag index; sent with \
             X-Accel-Expires: 0 so that nginx does not cache a page it could not purge by tag"
        );
    }
}

/// Writes `collected` (after any tags the handler put in the header itself) in `format`.
fn write_header<ResBody>(
    response: &mut http::Response<ResBody>,
    format: &TagHeader,
    collected: &[Tag],
    config: &CacheTagsLayer,
    uri: &http::Uri,
) {
    let headers = response.headers_mut();
    let mut tags: Vec<Tag> = Vec::new();
    for value in headers.get_all(&format.name) {
        let Ok(value) = value.to_str() else {
            tracing::warn!(
                target: "cache_purge_hooks",
                uri = %uri,
                header = %format.name,
                "the response's own tag header is not ASCII; replacing it with the collected tags"
            );
            continue;
        };
        for token in format.separator.split(value) {
            match Tag::parse(token) {
                Ok(tag) => tags.push(tag),
                Err(e) => tracing::warn!(
                    target: "cache_purge_hooks",
                    uri = %uri,
                    header = %format.name,
                    input = %e.input,
                    reason = e.reason,
                    "a tag the handler wrote into the response is not a valid tag; left out"
                ),
            }
        }
    }
    tags.extend(collected.iter().cloned());
    let rendered = format.render(&tags, config.fallback.as_ref());
    if !rendered.dropped.is_empty() {
        let fallback = format.fallback.as_ref().or(config.fallback.as_ref());
        tracing::warn!(
            target: "cache_purge_hooks",
            uri = %uri,
            header = %format.name,
            dropped = rendered.dropped.len(),
            written = rendered.written,
            fallback = fallback.map_or("none", Tag::as_str),
            first_dropped = %rendered.dropped[0],
            "the response's tags do not all fit in the header; a change to a dropped tag's entity \
             will not purge this page{}",
            if fallback.is_some() { " unless it purges the fallback tag" } else { " (declare a fallback tag)" }
        );
    }
    headers.remove(&format.name);
    for line in rendered.lines {
        match HeaderValue::try_from(line) {
            Ok(value) => {
                headers.append(format.name.clone(), value);
            }
            // Tags are visible ASCII, which every header value may hold.
            Err(e) => tracing::error!(
                target: "cache_purge_hooks",
                uri = %uri,
                header = %format.name,
                error = %e,
                "a tag header line could not be written"
            ),
        }
    }
}

#[cfg(feature = "axum")]
mod extract {
    use super::CacheTags;
    use axum_core::extract::FromRequestParts;
    use axum_core::response::{IntoResponse, Response};
    use http::StatusCode;

    /// The rejection of extracting [`CacheTags`] from a request that did not pass through a
    /// [`CacheTagsLayer`](super::CacheTagsLayer): `500 Internal Server Error`, saying so.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub struct MissingCacheTagsLayer;

    impl std::fmt::Display for MissingCacheTagsLayer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(
                "the handler takes CacheTags, but the request did not pass through a \
                 CacheTagsLayer: add `.layer(CacheTagsLayer::new(...))` to the router, after \
                 the routes that tag their responses",
            )
        }
    }

    impl std::error::Error for MissingCacheTagsLayer {}

    impl IntoResponse for MissingCacheTagsLayer {
        fn into_response(self) -> Response {
            tracing::error!(target: "cache_purge_hooks", "{self}");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{self}\n")).into_response()
        }
    }

    /// Takes the request's [`CacheTags`] (from its extensions, where [`CacheTagsLayer`]
    /// put it), so that a handler can say `tags: CacheTags`.
    ///
    /// [`CacheTagsLayer`]: super::CacheTagsLayer
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    impl<S: Send + Sync> FromRequestParts<S> for CacheTags {
        type Rejection = MissingCacheTagsLayer;

        async fn from_request_parts(
            parts: &mut http::request::Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<CacheTags>()
                .cloned()
                .ok_or(MissingCacheTagsLayer)
        }
    }
}

#[cfg(feature = "axum")]
pub use extract::MissingCacheTagsLayer;

#[cfg(test)]
mod tests;
