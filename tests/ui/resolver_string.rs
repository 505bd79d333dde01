use cache_purge_hooks::CachePurge;

// A resolver must return a list of targets; a single `String` is not one (it would be purged
// character by character if it were accepted).
fn post_url(p: &Post) -> String {
    format!("/posts/{}", p.slug)
}

#[derive(CachePurge)]
#[cache_purge(resolver = post_url)]
struct Post {
    slug: String,
}

fn main() {}
