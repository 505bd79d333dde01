use cache_purge_hooks::CachePurge;

#[derive(CachePurge)]
#[cache_purge(url = "/posts/{slug}")]
enum Post {
    Draft { slug: String },
    Published { slug: String },
}

fn main() {}
