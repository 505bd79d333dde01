use cache_purge_hooks::CachePurge;

struct Slug(String);

#[derive(CachePurge)]
#[cache_purge(url = "/posts/{slug}", url = "/tags/{tags}")]
struct Post {
    slug: Slug,
    tags: Option<Vec<String>>,
}

fn main() {}
