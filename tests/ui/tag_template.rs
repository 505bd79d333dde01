use cache_purge_hooks::CachePurge;

#[derive(CachePurge)]
#[cache_purge(tag = "post {id}")]
struct Space {
    id: i64,
}

#[derive(CachePurge)]
#[cache_purge(tag = "post:{idd}")]
struct Typo {
    id: i64,
}

#[derive(CachePurge)]
#[cache_purge(tag = "")]
struct Empty {
    id: i64,
}

fn main() {}
