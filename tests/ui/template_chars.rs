use cache_purge_hooks::CachePurge;

#[derive(CachePurge)]
#[cache_purge(url = "/posts/{slug} page")]
#[cache_purge(url = "/posts/\"{slug}\"")]
#[cache_purge(url = "/posts/{slug}#comments")]
#[cache_purge(url = "/posts/{slug}\\x")]
#[cache_purge(url = "/100%/{slug}")]
struct Post {
    slug: String,
}

fn main() {}
