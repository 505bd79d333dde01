use cache_purge_hooks::CachePurge;

#[derive(CachePurge)]
#[cache_purge(url = "/posts/{0}")]
struct Post(String);

#[derive(CachePurge)]
#[cache_purge(url = "/")]
struct Home;

fn main() {}
