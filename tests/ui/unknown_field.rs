use cache_purge_hooks::CachePurge;

#[derive(CachePurge)]
#[cache_purge(url = "/posts/{slg}")]
struct Model {
    id: i64,
    slug: String,
    title: String,
}

#[derive(CachePurge)]
#[cache_purge(url = "/a/{nope}/{also_nope}?q={id}")]
struct Other {
    id: i64,
}

fn main() {}
