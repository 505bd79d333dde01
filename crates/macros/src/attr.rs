//! Parsing of the `#[cache_purge(...)]` attributes into a [`Config`].

use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitStr, Path, Token};

use crate::template::{self, Template};

/// The keys accepted inside `#[cache_purge(...)]`, for error messages.
const KEYS: &[&str] = &[
    "url",
    "tag",
    "list_tag",
    "resolver",
    "registered",
    "fields",
    "crate",
];
const VALID_KEYS: &str = "url = \"...\", tag = \"...\", list_tag = \"...\", resolver = path, \
                          registered, fields(...), crate = \"...\"";

/// One source of purge targets, in the order written.
pub(crate) enum Source {
    /// `url = "..."`.
    Url { lit: LitStr, template: Template },
    /// `tag = "..."`.
    Tag { lit: LitStr, template: Template },
    /// `list_tag = "..."`: a constant tag, purged like a `tag`, carried only by list pages.
    ListTag(LitStr),
    /// `resolver = path`.
    Resolver(Path),
    /// `registered`.
    Registered(Span),
}

/// Everything the `#[cache_purge(...)]` attributes of one struct say.
#[derive(Default)]
pub(crate) struct Config {
    pub(crate) sources: Vec<Source>,
    /// The fields named in `fields(...)`, in order; `None` if `fields` was never written.
    pub(crate) fields: Option<Vec<Ident>>,
    /// The span of the first `fields` key, for the "needs a resolver" error.
    pub(crate) fields_span: Option<Span>,
    /// `crate = "..."`.
    pub(crate) krate: Option<Path>,
}

/// Collects every error instead of stopping at the first, so the user sees them all at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.0.is_some()
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

impl Config {
    /// Reads every `#[cache_purge(...)]` attribute of the struct.
    pub(crate) fn from_attrs(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut config = Config::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("cache_purge")) {
            if let Err(e) = attr.parse_nested_meta(|meta| config.item(meta, errors)) {
                errors.push(e);
            }
        }
        config
    }

    fn item(
        &mut self,
        meta: syn::meta::ParseNestedMeta<'_>,
        errors: &mut Errors,
    ) -> syn::Result<()> {
        let path = &meta.path;
        if path.is_ident("url") {
            let lit: LitStr = meta.value()?.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected a string literal: #[cache_purge(url = \"/posts/{slug}\")]",
                )
            })?;
            match template::parse(&lit.value()) {
                Ok(template) => self.sources.push(Source::Url { lit, template }),
                // A bad template does not stop the parsing of the following items.
                Err(msg) => errors.push(syn::Error::new(lit.span(), msg)),
            }
        } else if path.is_ident("tag") {
            let lit: LitStr = meta.value()?.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected a string literal: #[cache_purge(tag = \"post:{id}\")]",
                )
            })?;
            match template::parse_tag(&lit.value()) {
                Ok(template) => self.sources.push(Source::Tag { lit, template }),
                Err(msg) => errors.push(syn::Error::new(lit.span(), msg)),
            }
        } else if path.is_ident("list_tag") {
            let lit: LitStr = meta.value()?.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected a string literal: #[cache_purge(list_tag = \"posts\")]",
                )
            })?;
            match template::parse_tag(&lit.value()) {
                Ok(template) if template.fields().next().is_some() => errors.push(syn::Error::new(
                    lit.span(),
                    "a list tag names every list of this type, so it takes no `{field}`: \
                     write the tag of one value as `tag = \"...\"`",
                )),
                Ok(_) => {
                    let duplicate = self.sources.iter().any(|s| match s {
                        Source::ListTag(other) => other.value() == lit.value(),
                        _ => false,
                    });
                    if duplicate {
                        errors.push(syn::Error::new(
                            lit.span(),
                            format!("duplicate `list_tag = {:?}`", lit.value()),
                        ));
                    } else {
                        self.sources.push(Source::ListTag(lit));
                    }
                }
                Err(msg) => errors.push(syn::Error::new(lit.span(), msg)),
            }
        } else if path.is_ident("resolver") {
            let value = meta.value()?;
            if value.peek(LitStr) {
                let lit: LitStr = value.parse()?;
                return Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "write the resolver as a path, without quotes: \
                         #[cache_purge(resolver = {})]",
                        lit.value()
                    ),
                ));
            }
            let resolver: Path = value.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected the path of a function: #[cache_purge(resolver = path::to::function)]",
                )
            })?;
            self.sources.push(Source::Resolver(resolver));
        } else if path.is_ident("registered") {
            if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                return Err(meta.error("`registered` takes no value: #[cache_purge(registered)]"));
            }
            if self
                .sources
                .iter()
                .any(|s| matches!(s, Source::Registered(_)))
            {
                return Err(meta.error("duplicate `registered`"));
            }
            self.sources.push(Source::Registered(path.span()));
        } else if path.is_ident("fields") {
            if !meta.input.peek(syn::token::Paren) {
                return Err(
                    meta.error("expected a list of field names: #[cache_purge(fields(id, slug))]")
                );
            }
            let content;
            syn::parenthesized!(content in meta.input);
            let names = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
            self.fields_span.get_or_insert(path.span());
            self.fields.get_or_insert_with(Vec::new).extend(names);
        } else if path.is_ident("crate") {
            if self.krate.is_some() {
                return Err(meta.error("duplicate `crate = ...`"));
            }
            let value = meta.value()?;
            let krate = if value.peek(LitStr) {
                value.parse::<LitStr>()?.parse::<Path>()?
            } else {
                value.parse::<Path>()?
            };
            self.krate = Some(krate);
        } else {
            let key = quote::ToTokens::to_token_stream(path)
                .to_string()
                .replace(' ', "");
            let hint = match crate::suggest::closest(&key, KEYS) {
                Some(near) => format!(" (did you mean `{near}`?)"),
                None => String::new(),
            };
            errors.push(meta.error(format!(
                "unknown key `{key}` in #[cache_purge(...)]; valid keys are: {VALID_KEYS}{hint}"
            )));
            // Skip the key's value so the items after it are still checked.
            if meta.input.peek(Token![=]) {
                meta.value()?.parse::<syn::Expr>()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _content;
                syn::parenthesized!(_content in meta.input);
            }
        }
        Ok(())
    }
}
