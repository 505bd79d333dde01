//! The blog's pages carry the cache tags of what they show, as `xkey`
//! headers: a post page its post and category, a list (any page of it) `posts` and the tags
//! of every post and category on it — the same tags the entities' saves purge.

use std::time::Duration;

use cache_purge_hooks::backend::MemoryBackend;
use cache_purge_hooks::{PurgeTargets, Purger, Target};
use migrations_example::entity::{comment, post};
use migrations_example::seed::{EDITED_POST, seed};
use migrations_example::web::{BlogServer, PAGE_SIZE, router};
use migrations_example::{Migrator, register_comment_resolver};
use sea_orm::{ActiveModelTrait, ColumnTrait, Database, EntityTrait, QueryFilter, Set};
use sea_orm_migration::MigratorTrait;

/// Every line of a header of the response.
fn lines(response: &reqwest::Response, name: &str) -> Vec<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The tags an entity's save purges.
fn purged_tags(entity: &impl PurgeTargets) -> Vec<String> {
    entity
        .resolve_targets()
        .targets()
        .iter()
        .filter_map(|t| match t {
            Target::Tag(tag) => Some(tag.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn post_pages_and_paginated_lists_carry_xkey_headers_with_their_tags() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("blog.db").display());
    let db = Database::connect(url).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    register_comment_resolver().unwrap();
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .backend("memory", memory.clone())
        .build()
        .unwrap();
    purger.install();
    // The three sample posts (ids 1-3: two in category 1, one in 2), then twelve more in
    // category 1 (ids 4-15), so that the home page has a second page: ids 5 to 1.
    seed(&db).await.unwrap();
    for i in 1..=12 {
        post::ActiveModel {
            slug: Set(format!("extra-{i}")),
            title: Set(format!("Extra {i}")),
            body: Set("More.".into()),
            published: Set(true),
            category_id: Set(1),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();
    }
    assert_eq!(PAGE_SIZE, 10);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let blog = BlogServer::serve(listener, router(db.clone(), None)).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();

    let page = client
        .get(format!("{}/posts/{EDITED_POST}", blog.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let want = format!("post:{EDITED_POST} category:1");
    assert_eq!(lines(&page, "xkey"), [want.as_str()]);

    let second = client
        .get(format!("{}/?page=2", blog.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    let want = "posts post:extra-2 category:1 post:extra-1 post:purge-on-save category:2 \
                post:second-post post:hello-world";
    assert_eq!(lines(&second, "xkey"), [want]);
    let body = second.text().await.unwrap();
    assert!(
        body.contains("Hello, world") && !body.contains("Extra 3<"),
        "{body}"
    );

    let first = client.get(blog.url()).send().await.unwrap();
    let xkey = lines(&first, "xkey");
    assert!(
        xkey[0].starts_with("posts post:extra-12 category:1 "),
        "{xkey:?}"
    );
    assert!(!xkey[0].contains("post:hello-world"), "{xkey:?}");
    assert!(first.text().await.unwrap().contains("href=\"/?page=2\""));

    // What an edit of the post or a comment on it purges reaches the second page of the list,
    // which no URL template names.
    let edited = post::Entity::find()
        .filter(post::Column::Slug.eq(EDITED_POST))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let comment = comment::Model {
        id: 1,
        page: "/posts/hello-world".into(),
        author: "a".into(),
        body: "b".into(),
    };
    for purged in [purged_tags(&edited), purged_tags(&comment)] {
        assert!(
            purged.contains(&format!("post:{EDITED_POST}")),
            "{purged:?}"
        );
        assert!(
            purged.iter().all(|t| want.split(' ').any(|w| w == t)),
            "{purged:?}"
        );
    }

    blog.stop().await.unwrap();
    purger.shutdown(Duration::from_secs(10)).await.unwrap();
    Purger::uninstall();
    db.close().await.unwrap();
}
