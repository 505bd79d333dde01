use cache_purge_hooks::CachePurge;

#[derive(CachePurge)]
#[cache_purge(url = "posts/{slug}")]
#[cache_purge(url = "{slug}/comments")]
#[cache_purge(url = "//cdn.example.com/{slug}")]
#[cache_purge(url = "ftp://example.com/{slug}")]
#[cache_purge(url = "https://{slug}.example.com/")]
struct Post {
    slug: String,
}

fn main() {}
