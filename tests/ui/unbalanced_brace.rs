use cache_purge_hooks::CachePurge;

#[derive(CachePurge)]
#[cache_purge(url = "/posts/{slug")]
#[cache_purge(url = "/posts/slug}")]
#[cache_purge(url = "/posts/{{slug}}")]
#[cache_purge(url = "/posts/{}")]
#[cache_purge(url = "/posts/{a-b}")]
struct Post {
    slug: String,
}

fn main() {}
