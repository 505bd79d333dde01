use cache_purge_hooks::CachePurge;

#[derive(CachePurge)]
#[cache_purge(urls = "/posts/{slug}", url = "/posts/{slg}")]
#[cache_purge(tags = "post")]
struct Post {
    slug: String,
}

fn main() {}
