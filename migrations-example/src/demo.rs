//! The cycle `blog --behind nginx|varnish --demo` shows a person: the pages are cached (HIT),
//! a post is edited through the site (a SeaORM save), and the next GET is a MISS with the new
//! content, while a neighbouring post stays cached.
//!
//! Every step is checked: [`run_cycle`] fails, saying what it saw, when the cache does not
//! behave so.

use std::io::Write;
use std::time::{Duration, Instant};

use cache_purge_hooks_testing::Page;

use crate::front::FrontCache;
use crate::seed::{EDITED_POST, NEIGHBOUR_POST};
use crate::web::{escape, post_path};

/// A paginated variant of the home page: a URL that no template names.
const LIST_VARIANT: &str = "/?page=1";

/// The two titles the demo switches the edited post between, so that every run (also on a
/// database a previous run edited) changes it.
const TITLES: [&str; 2] = ["Hello, world", "Hello, cache"];

/// What went wrong in the cycle.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The cache did not behave as the cycle expects.
    #[error("{0}")]
    Unexpected(String),
    /// A request could not be made.
    #[error(transparent)]
    Harness(#[from] cache_purge_hooks_testing::HarnessError),
    /// The edit request could not be made.
    #[error("POST {url} failed: {source}")]
    Edit {
        /// The URL posted to.
        url: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// Writing the report failed.
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs the cycle through `cache` (which must be in front of a blog with the sample content
/// of [`crate::seed`]), writing each step to `out`.
pub async fn run_cycle(cache: &FrontCache, out: &mut impl Write) -> Result<(), DemoError> {
    let name = cache.kind().name();
    let edited = post_path(EDITED_POST);
    let neighbour = post_path(NEIGHBOUR_POST);

    writeln!(
        out,
        "1. GET each page twice through {name}: fetched from the blog, then cached"
    )?;
    let first = warm(cache, &edited, out).await?;
    let old_title = headline(&first.body).unwrap_or_default().to_owned();
    let category = category_link(&first.body).ok_or_else(|| {
        DemoError::Unexpected(format!("{edited} links to no category: {}", first.body))
    })?;
    // `/?page=1` is the home page under a URL no template names: only its tags can purge it.
    for path in [neighbour.as_str(), "/", category.as_str(), LIST_VARIANT] {
        warm(cache, path, out).await?;
    }

    let new_title = if old_title == TITLES[1] {
        TITLES[0]
    } else {
        TITLES[1]
    };
    let records_before = cache.purge_records()?;
    let url = format!("{}/admin{edited}", cache.url());
    writeln!(
        out,
        "\n2. edit the post through the site (a SeaORM save; its hooks purge):\n   \
         POST /admin{edited}  title={new_title}"
    )?;
    let reply = edit_title(&url, new_title).await?;
    writeln!(out, "   -> {}", reply.trim_end())?;
    let records = new_records(cache, &records_before, 4).await?;
    let what = match cache {
        FrontCache::Nginx(_) => "nginx's access log",
        FrontCache::Varnish(_) => "varnishd's ban list",
    };
    writeln!(out, "   {what} now has:")?;
    for record in &records {
        writeln!(out, "     {record}")?;
    }
    if records.is_empty() {
        return Err(DemoError::Unexpected(format!(
            "no purge reached {name} (nothing new in {what})"
        )));
    }

    writeln!(out, "\n3. GET the pages again")?;
    let page = cache.get(&edited).await?;
    show(out, &edited, &page, "purged: the new title")?;
    expect_fresh(&edited, &page, &format!("<h1>{}</h1>", escape(new_title)))?;
    let again = cache.get(&edited).await?;
    show(out, &edited, &again, "cached again")?;
    if !again.is_hit() {
        return Err(unexpected(&edited, "to be cached again", &again));
    }
    for path in ["/", category.as_str()] {
        let page = cache.get(path).await?;
        show(out, path, &page, "purged: it lists the post")?;
        expect_fresh(path, &page, &escape(new_title))?;
    }
    let page = cache.get(LIST_VARIANT).await?;
    let how = match cache {
        FrontCache::Varnish(_) => "purged by its tags: no URL names it",
        FrontCache::Nginx(_) => "purged by its tags, through the tag index: no URL names it",
    };
    show(out, LIST_VARIANT, &page, how)?;
    expect_fresh(LIST_VARIANT, &page, &escape(new_title))?;
    let page = cache.get(&neighbour).await?;
    show(out, &neighbour, &page, "not purged: still cached")?;
    if !page.is_hit() {
        return Err(unexpected(&neighbour, "to stay cached", &page));
    }
    writeln!(
        out,
        "\nOK: {edited} was a HIT, the edit purged it, the next GET was a MISS with the new \
         title, and {neighbour} stayed cached."
    )?;
    Ok(())
}

/// GETs `path` twice; the second must be a HIT. Returns the first page.
async fn warm(cache: &FrontCache, path: &str, out: &mut impl Write) -> Result<Page, DemoError> {
    let first = cache.get(path).await?;
    if first.status != 200 {
        return Err(unexpected(path, "200", &first));
    }
    show(out, path, &first, "")?;
    let second = cache.get(path).await?;
    show(out, path, &second, "")?;
    if !second.is_hit() {
        return Err(unexpected(path, "a HIT on the second GET", &second));
    }
    Ok(first)
}

async fn edit_title(url: &str, title: &str) -> Result<String, DemoError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|source| DemoError::Edit {
            url: url.to_owned(),
            source,
        })?;
    let response = client
        .post(url)
        .form(&[("title", title)])
        .send()
        .await
        .map_err(|source| DemoError::Edit {
            url: url.to_owned(),
            source,
        })?;
    let status = response.status();
    let body = response.text().await.map_err(|source| DemoError::Edit {
        url: url.to_owned(),
        source,
    })?;
    if status != reqwest::StatusCode::SEE_OTHER {
        return Err(DemoError::Unexpected(format!(
            "POST {url} answered {status}, expected 303 See Other: {body}"
        )));
    }
    Ok(format!("{} {body}", status.as_u16()))
}

/// The purge records the cache added since `before`, waiting a moment for at least
/// `expected` of them (nginx logs a request just after answering it).
async fn new_records(
    cache: &FrontCache,
    before: &[String],
    expected: usize,
) -> Result<Vec<String>, DemoError> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let now = cache.purge_records()?;
        let fresh: Vec<String> = match cache {
            // The access log only grows.
            FrontCache::Nginx(_) => now.iter().skip(before.len()).cloned().collect(),
            // varnishd may drop old bans from the list: compare contents.
            FrontCache::Varnish(_) => now.into_iter().filter(|b| !before.contains(b)).collect(),
        };
        let enough = match cache {
            FrontCache::Nginx(_) => fresh.len() >= expected,
            // One ban for the URLs of a batch, one for its tags.
            FrontCache::Varnish(_) => fresh.len() >= 2,
        };
        if enough || Instant::now() >= deadline {
            return Ok(fresh);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn show(out: &mut impl Write, path: &str, page: &Page, note: &str) -> std::io::Result<()> {
    let cache = page.cache.as_deref().unwrap_or("-");
    let title = headline(&page.body)
        .map(|t| format!("“{t}”"))
        .unwrap_or_default();
    let note = if note.is_empty() {
        String::new()
    } else {
        format!("  ({note})")
    };
    writeln!(
        out,
        "   GET {path:<20} {:<3} {cache:<4} {title}{note}",
        page.status
    )
}

fn expect_fresh(path: &str, page: &Page, needle: &str) -> Result<(), DemoError> {
    if page.is_hit() {
        return Err(unexpected(
            path,
            "a MISS after the edit (it was not purged)",
            page,
        ));
    }
    if !page.body.contains(needle) {
        return Err(unexpected(
            path,
            &format!("the new content ({needle})"),
            page,
        ));
    }
    Ok(())
}

fn unexpected(path: &str, expected: &str, page: &Page) -> DemoError {
    DemoError::Unexpected(format!(
        "GET {path}: expected {expected}, got status {} cache {:?}: {}",
        page.status,
        page.cache,
        page.body.chars().take(300).collect::<String>()
    ))
}

/// The text of the page's `<h1>`.
pub fn headline(html: &str) -> Option<&str> {
    let start = html.find("<h1>")? + "<h1>".len();
    let end = start + html[start..].find("</h1>")?;
    Some(&html[start..end])
}

/// The first `/categories/<id>` link of a page.
fn category_link(html: &str) -> Option<String> {
    let start = html.find("href=\"/categories/")? + "href=\"".len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headline_and_category_link() {
        let html = "<h1>Hello, world</h1>\n<p>in <a href=\"/categories/7\">Rust</a></p>";
        assert_eq!(headline(html), Some("Hello, world"));
        assert_eq!(category_link(html).as_deref(), Some("/categories/7"));
        assert_eq!(headline("<p>none</p>"), None);
        assert_eq!(category_link("<p>none</p>"), None);
    }
}
