use cache_purge_hooks::CachePurge;

#[derive(CachePurge)]
#[cache_purge(list_tag = "posts:{id}")]
struct WithField {
    id: i64,
}

#[derive(CachePurge)]
#[cache_purge(tag = "posts", list_tag = "posts")]
struct AlsoTag {
    id: i64,
}

#[derive(CachePurge)]
#[cache_purge(list_tag = "posts", list_tag = "posts")]
struct Twice {
    id: i64,
}

#[derive(CachePurge)]
#[cache_purge(list_tag = "all posts")]
struct Space {
    id: i64,
}

#[derive(CachePurge)]
#[cache_purge(list_tags = "posts")]
struct Typo {
    id: i64,
}

fn main() {}
