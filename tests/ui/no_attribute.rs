use cache_purge_hooks::CachePurge;

#[derive(CachePurge)]
struct Post {
    slug: String,
}

#[derive(CachePurge)]
#[cache_purge(fields(slug))]
struct Empty {
    slug: String,
}

fn main() {}
