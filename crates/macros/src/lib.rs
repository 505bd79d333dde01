//! The `#[derive(CachePurge)]` macro of [cache-purge-hooks](https://docs.rs/cache-purge-hooks).
//!
//! Use it through the `cache-purge-hooks` crate, which re-exports it as
//! `cache_purge_hooks::CachePurge`; this crate is an implementation detail. Its generated code
//! refers to `__private` of the facade, found under the name the deriving crate's
//! `Cargo.toml` gives it, or of `cache-purge-hooks-engine` when only that is a dependency.
//! See [`CachePurge`](derive@CachePurge).
#![warn(missing_docs)]

mod attr;
mod expand;
mod suggest;
mod template;

use proc_macro::TokenStream;

/// *This derive is defined in `cache-purge-hooks-macros` and used through
/// [`cache-purge-hooks`](https://docs.rs/cache-purge-hooks/latest/cache_purge_hooks/derive.CachePurge.html),
/// which re-exports it and documents its attributes with examples (they need that crate's
/// traits and purger, and that crate depends on this one).*
#[proc_macro_derive(CachePurge, attributes(cache_purge))]
pub fn derive_cache_purge(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
