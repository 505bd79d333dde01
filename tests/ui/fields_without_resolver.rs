use cache_purge_hooks::CachePurge;

#[derive(CachePurge)]
#[cache_purge(url = "/posts/{slug}", fields(slug))]
struct Post {
    slug: String,
}

fn main() {}
