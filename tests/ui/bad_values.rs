use cache_purge_hooks::CachePurge;

fn urls(_: &A) -> Vec<String> {
    vec![]
}

#[derive(CachePurge)]
#[cache_purge(url = 1)]
struct A {
    slug: String,
}

#[derive(CachePurge)]
#[cache_purge(resolver = "urls")]
struct B {
    slug: String,
}

#[derive(CachePurge)]
#[cache_purge(registered = true)]
struct C {
    slug: String,
}

#[derive(CachePurge)]
#[cache_purge(url = "/a", fields = "slug")]
struct D {
    slug: String,
}

#[derive(CachePurge)]
#[cache_purge]
struct E {
    slug: String,
}

#[derive(CachePurge)]
#[cache_purge(url = "/a")]
struct F {
    #[cache_purge(url = "/b")]
    slug: String,
}

fn main() {}
