use cache_purge_hooks::CachePurge;

fn urls(p: &Post) -> Vec<String> {
    vec![format!("/posts/{}", p.slug)]
}

#[derive(CachePurge)]
#[cache_purge(resolver = urls, fields(id, slg))]
struct Post {
    id: i64,
    slug: String,
}

fn main() {}
