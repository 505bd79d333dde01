//! Checking the parsed attributes against the struct and generating the `PurgeTargets` impl.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, GenericArgument, Ident, LitStr, PathArguments, Type};

use crate::attr::{Config, Errors, Source};
use crate::suggest::closest;
use crate::template::{Part, Template};

/// A named field of the struct.
struct Field<'a> {
    ident: &'a Ident,
    /// The name without any `r#`, as written in templates and reported in `URL_FIELDS`.
    name: String,
    ty: &'a Type,
}

pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let config = Config::from_attrs(&input.attrs, &mut errors);
    let attr_errors = errors.has_errors();
    let fields = struct_fields(input, &mut errors);

    if config.sources.is_empty() && !attr_errors {
        errors.push(syn::Error::new(
            input.ident.span(),
            "#[derive(CachePurge)] needs at least one #[cache_purge(url = \"...\")], \
             #[cache_purge(tag = \"...\")], #[cache_purge(resolver = path)] or \
             #[cache_purge(registered)]",
        ));
    }
    let has_code = config
        .sources
        .iter()
        .any(|s| matches!(s, Source::Resolver(_) | Source::Registered(_)));
    if let (Some(span), false) = (config.fields_span, has_code) {
        errors.push(syn::Error::new(
            span,
            "`fields(...)` lists the fields read by a `resolver = path` or a `registered` \
             resolver, and there is neither; a URL template names its fields itself",
        ));
    }
    if let Some(fields) = &fields {
        check_fields(input, &config, fields, &mut errors);
    }
    check_list_tags(&config, &mut errors);
    errors.finish()?;
    let fields = fields.unwrap_or_default();
    Ok(generate(input, &config, &fields))
}

/// The named fields of the struct, or an error saying why there are none.
fn struct_fields<'a>(input: &'a DeriveInput, errors: &mut Errors) -> Option<Vec<Field<'a>>> {
    const ONLY: &str = "#[derive(CachePurge)] supports only structs with named fields \
                        (`struct Post { slug: String }`)";
    let ident = &input.ident;
    let (span, what) = match &input.data {
        Data::Struct(s) => {
            for field in &s.fields {
                for attr in field
                    .attrs
                    .iter()
                    .filter(|a| a.path().is_ident("cache_purge"))
                {
                    errors.push(syn::Error::new_spanned(
                        attr,
                        "#[cache_purge(...)] goes on the struct, not on a field; URL templates \
                         name the fields they use: #[cache_purge(url = \"/posts/{slug}\")]",
                    ));
                }
            }
            match &s.fields {
                Fields::Named(named) => {
                    return Some(
                        named
                            .named
                            .iter()
                            .filter_map(|f| {
                                let ident = f.ident.as_ref()?;
                                Some(Field {
                                    ident,
                                    name: ident.unraw().to_string(),
                                    ty: &f.ty,
                                })
                            })
                            .collect(),
                    );
                }
                Fields::Unnamed(unnamed) => (unnamed.span(), "a tuple struct"),
                Fields::Unit => (ident.span(), "a unit struct"),
            }
        }
        Data::Enum(e) => (e.enum_token.span, "an enum"),
        Data::Union(u) => (u.union_token.span, "a union"),
    };
    errors.push(syn::Error::new(
        span,
        format!("{ONLY}; `{ident}` is {what}"),
    ));
    None
}

/// Checks that every field named by a template or by `fields(...)` exists.
fn check_fields(input: &DeriveInput, config: &Config, fields: &[Field<'_>], errors: &mut Errors) {
    let unknown = |name: &str, span: Span| {
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        let hint = match closest(name, &names) {
            Some(near) => format!(" (did you mean `{near}`?)"),
            None => String::new(),
        };
        let list = if names.is_empty() {
            "it has no fields".to_owned()
        } else {
            format!("fields are: {}", names.join(", "))
        };
        syn::Error::new(
            span,
            format!("no field `{name}` on `{}`; {list}{hint}", input.ident),
        )
    };
    for source in &config.sources {
        if let Source::Url { lit, template } | Source::Tag { lit, template } = source {
            let mut reported = Vec::new();
            for name in template.fields() {
                if !fields.iter().any(|f| f.name == name) && !reported.contains(&name) {
                    reported.push(name);
                    errors.push(unknown(name, lit.span()));
                }
            }
        }
    }
    for ident in config.fields.iter().flatten() {
        let name = ident.unraw().to_string();
        if !fields.iter().any(|f| f.name == name) {
            errors.push(unknown(&name, ident.span()));
        }
    }
}

/// A list tag written also as a plain `tag` would be carried by every value's own page, which
/// is what `list_tag` exists to prevent: say so rather than pick one.
fn check_list_tags(config: &Config, errors: &mut Errors) {
    for source in &config.sources {
        let Source::ListTag(list) = source else {
            continue;
        };
        let also_tag = config.sources.iter().any(|s| match s {
            Source::Tag { template, .. } => {
                template.fields().next().is_none() && template_text(template) == list.value()
            }
            _ => false,
        });
        if also_tag {
            errors.push(syn::Error::new(
                list.span(),
                format!(
                    "{:?} is both a `tag` and a `list_tag`; a list tag is purged by every save \
                     like a tag, so write it once, as `list_tag` (then a value's own page does \
                     not carry it)",
                    list.value()
                ),
            ));
        }
    }
}

/// The text of a template without fields.
fn template_text(template: &Template) -> String {
    template
        .parts
        .iter()
        .map(|p| match p {
            Part::Lit(text) => text.as_str(),
            Part::Field { .. } => "",
        })
        .collect()
}

/// The `T` of a field typed (syntactically) `Option<T>`.
fn option_inner(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Group(g) => option_inner(&g.elem),
        Type::Paren(p) => option_inner(&p.elem),
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            if last.ident != "Option" {
                return None;
            }
            let PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            let mut types = args.args.iter().filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            });
            match (types.next(), types.next()) {
                (Some(t), None) => Some(t),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether `tokens` mention one of `params` (so a bound on them is not trivially true or
/// false, and may be added to the impl's `where` clause).
fn mentions(tokens: TokenStream, params: &[&Ident]) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => params.iter().any(|p| **p == i),
        TokenTree::Group(g) => mentions(g.stream(), params),
        _ => false,
    })
}

/// The path of the crate the generated code refers to, when no `crate = "..."` says it: the
/// `cache-purge-hooks` facade under the name the user's `Cargo.toml` gives it (so a renamed
/// dependency works), else `cache-purge-hooks-engine` when only that is a dependency (a crate
/// built on the lean crates, such as this family's ORM integrations), else
/// `::cache_purge_hooks`, whose "unresolved import" error then names the facade.
fn default_crate_path() -> TokenStream {
    use proc_macro_crate::{FoundCrate, crate_name};
    let found = |name: String| {
        let ident = Ident::new(&name, Span::call_site());
        quote!(::#ident)
    };
    match crate_name("cache-purge-hooks") {
        Ok(FoundCrate::Name(name)) => found(name),
        // The facade's own tests and doc tests, which see it as an extern crate.
        Ok(FoundCrate::Itself) => quote!(::cache_purge_hooks),
        Err(_) => match crate_name("cache-purge-hooks-engine") {
            Ok(FoundCrate::Name(name)) => found(name),
            Ok(FoundCrate::Itself) => quote!(::cache_purge_hooks_engine),
            Err(_) => quote!(::cache_purge_hooks),
        },
    }
}

fn generate(input: &DeriveInput, config: &Config, fields: &[Field<'_>]) -> TokenStream {
    let ident = &input.ident;
    let krate = config
        .krate
        .as_ref()
        .map_or_else(default_crate_path, ToTokens::to_token_stream);
    let private = quote!(#krate::__private);
    // Local names are mixed-site, so they cannot clash with (or capture) anything the user
    // writes, such as a resolver function called `targets`.
    let targets = Ident::new("targets", Span::mixed_site());
    let url = Ident::new("url", Span::mixed_site());
    let field = |name: &str| fields.iter().find(|f| f.name == name);

    let mut generics = input.generics.clone();
    let type_params: Vec<&Ident> = input.generics.type_params().map(|p| &p.ident).collect();
    let mut bounds: Vec<TokenStream> = Vec::new();
    let mut add_bound = |bound: TokenStream| {
        let text = bound.to_string();
        if !bounds.iter().any(|b| b.to_string() == text) {
            bounds.push(bound);
        }
    };

    let mut url_fields: Vec<String> = Vec::new();
    let mut note_field = |name: &str| {
        if !url_fields.iter().any(|f| f == name) {
            url_fields.push(name.to_owned());
        }
    };

    let mut body = Vec::new();
    let mut list_tags: Vec<LitStr> = Vec::new();
    for source in &config.sources {
        match source {
            Source::Url { lit, template } => {
                for name in template.fields() {
                    note_field(name);
                    let f = field(name).expect("fields were checked");
                    let ty = option_inner(f.ty).unwrap_or(f.ty);
                    if mentions(ty.to_token_stream(), &type_params) {
                        add_bound(quote!(#ty: ::core::fmt::Display));
                    }
                }
                body.push(render_url(
                    lit, template, &private, &targets, &url, &field, false,
                ));
            }
            Source::Tag { lit, template } => {
                for name in template.fields() {
                    note_field(name);
                    let f = field(name).expect("fields were checked");
                    let ty = option_inner(f.ty).unwrap_or(f.ty);
                    if mentions(ty.to_token_stream(), &type_params) {
                        add_bound(quote!(#ty: ::core::fmt::Display));
                    }
                }
                body.push(render_url(
                    lit, template, &private, &targets, &url, &field, true,
                ));
            }
            Source::ListTag(lit) => {
                let span = lit.span();
                body.push(quote_spanned! {span=>
                    #targets.push_any(#private::Tag::parse(#lit));
                });
                list_tags.push(lit.clone());
            }
            Source::Resolver(path) => {
                let check = Ident::new(RESOLVER_OUTPUT, path.span());
                body.push(quote_spanned! {path.span()=>
                    #check::add_to(#path(self), #targets);
                });
            }
            Source::Registered(span) => {
                if !input.generics.params.is_empty() {
                    let (_, ty_generics, _) = input.generics.split_for_impl();
                    add_bound(quote!(#ident #ty_generics: 'static));
                }
                body.push(quote_spanned! {*span=>
                    #private::registry::resolve_into(self, #targets);
                });
            }
        }
    }
    for ident in config.fields.iter().flatten() {
        note_field(&ident.unraw().to_string());
    }

    let has_code = config
        .sources
        .iter()
        .any(|s| matches!(s, Source::Resolver(_) | Source::Registered(_)));
    let resolver_check = config.sources.iter().find_map(|s| match s {
        Source::Resolver(path) => Some(resolver_check(path.span(), &private)),
        _ => None,
    });
    let url_fields = if has_code && config.fields.is_none() {
        quote!(::core::option::Option::None)
    } else {
        quote!(::core::option::Option::Some(&[#(#url_fields),*]))
    };

    if !bounds.is_empty() {
        let where_clause = generics.make_where_clause();
        for bound in bounds {
            where_clause.predicates.push(syn::parse_quote!(#bound));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics #private::PurgeTargets for #ident #ty_generics #where_clause {
            const URL_FIELDS: ::core::option::Option<&'static [&'static str]> = #url_fields;
            const LIST_TAGS: &'static [&'static str] = &[#(#list_tags),*];

            fn purge_targets(&self, #targets: &mut #private::Targets) {
                #resolver_check
                #(#body)*
            }
        }
    }
}

/// The name of the function-local trait that checks what resolvers return.
const RESOLVER_OUTPUT: &str = "__CachePurgeResolverOutput";

/// The function-local trait through which resolver results are added.
///
/// A resolver returning something that is not a list of targets (typically a single `String`)
/// then gets an error saying so, rather than only "`String` is not an iterator". The trait is
/// local to `purge_targets`, so that the expansions for `Model` and `ModelEx` cannot clash; it
/// is spanned on the (first) resolver, so that the notes about its blanket impl point there
/// rather than at the derive.
fn resolver_check(span: Span, private: &TokenStream) -> TokenStream {
    let resolver_output = Ident::new(RESOLVER_OUTPUT, span);
    quote_spanned! {span=>
        #[diagnostic::on_unimplemented(
            message = "a `#[cache_purge(resolver = ...)]` function must return a list of purge targets, not `{Self}`",
            label = "this resolver returns `{Self}`, which is not a list of targets",
            note = "return a list of URL strings, `Target`s or `Tag`s, e.g. a `Vec<String>`, an `Option<String>` or a `[&str; N]`; wrap a single URL as `[url]`"
        )]
        trait #resolver_output {
            fn add_to(self, targets: &mut #private::Targets);
        }
        impl<I> #resolver_output for I
        where
            I: ::core::iter::IntoIterator,
            #private::Targets: ::core::iter::FromIterator<I::Item>,
        {
            fn add_to(self, targets: &mut #private::Targets) {
                targets.merge(::core::iter::Iterator::collect(
                    ::core::iter::IntoIterator::into_iter(self),
                ));
            }
        }
    }
}

/// Bytes reserved for each field's value when a template is rendered (a slug or a number
/// fits; a longer value grows the string once).
const FIELD_ROOM: usize = 24;

/// The statements that render one template and push the URL (or, with `tag`, the tag).
fn render_url<'a>(
    lit: &LitStr,
    template: &Template,
    private: &TokenStream,
    targets: &Ident,
    url: &Ident,
    field: &dyn Fn(&str) -> Option<&'a Field<'a>>,
    tag: bool,
) -> TokenStream {
    let span = lit.span();
    let mut parts = template.parts.iter().peekable();
    // A URL template starts with `/` or a scheme; a tag template may start with a field.
    let first = match parts.peek() {
        Some(Part::Lit(first)) => {
            parts.next();
            first.clone()
        }
        _ => String::new(),
    };
    let finish = |value: TokenStream| {
        if tag {
            quote_spanned! {span=> #targets.push_any(#private::Tag::parse(#value)); }
        } else {
            quote_spanned! {span=> #targets.push_any(#value); }
        }
    };
    if parts.peek().is_none() {
        return finish(quote!(#first));
    }

    // Option fields are bound once each, in order of first use.
    let mut options: Vec<(&str, &Ident, Ident)> = Vec::new();
    let mut stmts = Vec::new();
    for part in parts {
        match part {
            Part::Lit(text) => stmts.push(quote_spanned! {span=> #url.push_str(#text); }),
            Part::Field { name, query } => {
                let f = field(name).expect("fields were checked");
                // The field's tokens carry the template's span, so a field that is not
                // `Display` is reported on the template.
                let mut member = f.ident.clone();
                member.set_span(span);
                let value = if option_inner(f.ty).is_some() {
                    if let Some((_, _, b)) = options.iter().find(|(n, _, _)| n == name) {
                        b.to_token_stream()
                    } else {
                        // Mixed-site hygiene, located on the template so that a type error
                        // about the value points there.
                        let b = format_ident!(
                            "value_{}",
                            options.len(),
                            span = Span::mixed_site().located_at(span)
                        );
                        let tokens = b.to_token_stream();
                        options.push((name, f.ident, b));
                        tokens
                    }
                } else {
                    quote_spanned!(span=> &self.#member)
                };
                let push = if tag {
                    quote!(push_tag_value)
                } else if *query {
                    quote!(push_query_value)
                } else {
                    quote!(push_path_segment)
                };
                stmts.push(quote_spanned! {span=> #private::#push(&mut #url, #value); });
            }
        }
    }
    // The URL is handed over by value: a rendered path in the browser form becomes the
    // target without a copy. A tag is parsed from a borrow.
    let push = if tag {
        finish(quote!(&#url))
    } else {
        finish(quote!(#url))
    };
    // Room for the literal text and a short value per field, so that rendering does not
    // grow the string step by step.
    let capacity = template
        .parts
        .iter()
        .map(|part| match part {
            Part::Lit(text) => text.len(),
            Part::Field { .. } => FIELD_ROOM,
        })
        .sum::<usize>();
    let render = quote_spanned! {span=>
        let mut #url = ::std::string::String::with_capacity(#capacity);
        #url.push_str(#first);
        #(#stmts)*
        #push
    };
    match options.as_slice() {
        [] => quote!({ #render }),
        [(_, member, binding)] => quote_spanned! {span=>
            if let ::core::option::Option::Some(#binding) = &self.#member {
                #render
            }
        },
        _ => {
            let bindings = options.iter().map(|(_, _, b)| b);
            let members = options.iter().map(|(_, m, _)| m);
            quote_spanned! {span=>
                if let (#(::core::option::Option::Some(#bindings)),*) = (#(&self.#members),*) {
                    #render
                }
            }
        }
    }
}
