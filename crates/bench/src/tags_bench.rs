//! Scenario 5: purging by tag on Varnish (the xkey VCL, which also serves tag bans), beside
//! the URL rate of the same run on the same varnishd.
//!
//! Every page `/g/<method>/<i>` carries one tag `<method>:<i>` in an `xkey` header, and its
//! neighbour `/g/<method>/<i>-keep` the tag `<method>:<i>-keep`, which an exact tag purge must
//! leave cached. Methods:
//!
//! - ours, `tags = "ban"`: a `Purger` with the `VarnishBackend` in `cli` mode; a batch of
//!   tags is one whole-token alternation ban on `obj.http.xkey`;
//! - ours, `tags = "xkey"`: `mode = "http"`, `PURGE /` requests with the tags in
//!   `xkey-purge` values, over `concurrency` connections, pipelined (`pipeline` deep);
//! - FOSHttpCache's way (its Varnish proxy client with xkey): the tags joined by spaces in
//!   `xkey-purge` headers of at most 4,096 bytes, one `PURGE` each, in sequence over one
//!   keep-alive connection;
//! - the URL reference: ours, `cli` mode, the same number of URLs (no tags).
//!
//! And on nginx ([`run_nginx`]), which keeps no tags: the tag index, in memory and in Redis,
//! beside the URL rate of the same backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_purge_hooks::backend::NginxBackend;
use cache_purge_hooks::backend::varnish::VarnishBackend;
use cache_purge_hooks::settings::{
    NginxSettings, NginxTags, VarnishMode, VarnishSettings, VarnishTags,
};
use cache_purge_hooks::tag_index::{MemoryTagIndex, RedisTagIndex};
use cache_purge_hooks::{PurgeUrl, Tag, TagIndex, Target};
use cache_purge_hooks_testing::{Nginx, NginxConfig, Origin, Redis, Varnish};

use crate::cpu::CpuClock;
use crate::report::{Row, Table, grouped};
use crate::{Config, Context, Result, progress, verify_after, web};

const CACHE_HEADER: &str = "x-cache";
/// What the harness's nginx says about its cache.
const NGINX_CACHE_HEADER: &str = "x-cache-status";

/// FOSHttpCache's `header_length` for tag headers.
const FOS_HEADER_LENGTH: usize = 4096;

/// The pages of a method and their tags (`prefix` is `/g/<method>`).
struct Set {
    pages: Vec<String>,
    tags: Vec<String>,
    neighbours: Vec<String>,
}

fn tagged_set(origin: &Origin, method: &str, count: usize, check: usize) -> Result<Set> {
    let pages = web::paths(&format!("/g/{method}"), count);
    let tags: Vec<String> = (0..count).map(|i| format!("{method}:{i}")).collect();
    for (page, tag) in pages.iter().zip(&tags) {
        origin
            .add_header(page, "xkey", tag)
            .context("tagging a page")?;
    }
    let neighbours = web::neighbours(&pages, check);
    for page in &neighbours {
        let i = page
            .rsplit('/')
            .next()
            .and_then(|last| last.strip_suffix("-keep"))
            .ok_or("a neighbour path without -keep")?;
        origin
            .add_header(page, "xkey", &format!("{method}:{i}-keep"))
            .context("tagging a neighbour")?;
    }
    Ok(Set {
        pages,
        tags,
        neighbours,
    })
}

fn tag_targets(tags: &[String]) -> Result<Vec<Target>> {
    tags.iter()
        .map(|t| Target::tag(t).with_context(|| format!("invalid tag {t}")))
        .collect()
}

/// Runs scenario 5 on a varnishd started with the xkey VCL.
pub(crate) async fn run(config: &Config, origin: &Origin, varnish: &Varnish) -> Result<Table> {
    let client = web::client(16)?;
    let base = format!("http://{}", varnish.http_addr());
    let cache = (&client, base.as_str(), CACHE_HEADER, origin);
    let n = config.urls;
    let ban = tagged_set(origin, "ban", n, config.check)?;
    let xkey = tagged_set(origin, "xkey", n, config.check)?;
    let fos = tagged_set(origin, "fos", n, config.check)?;
    let urls = tagged_set(origin, "url", n, config.check)?;

    let mut table = Table::new(
        "tags",
        format!(
            "5. Varnish purges by tag: {} cached pages (one tag each) per method, varnishd {} with xkey",
            grouped(n as u64),
            varnish.http_addr()
        ),
        "tag",
    );
    let mut all: Vec<String> = Vec::new();
    for set in [&ban, &xkey, &fos, &urls] {
        all.extend(set.pages.iter().cloned());
        all.extend(set.neighbours.iter().cloned());
    }
    progress!(
        "varnishd (xkey): warming {} pages",
        grouped(all.len() as u64)
    );
    web::warm(&client, &base, CACHE_HEADER, &all).await?;

    let mut cli = VarnishSettings::default();
    cli.servers = vec![
        varnish
            .admin_addr()
            .parse()
            .context("varnishd's admin address")?,
    ];
    cli.secret_file = varnish.secret_file().to_path_buf();
    cli.timeout = Duration::from_secs(5);

    // (a) ours, bans on the tag header.
    progress!("varnishd: ours, tags = \"ban\", {} tags", grouped(n as u64));
    let mut settings = cli.clone();
    settings.tags = VarnishTags::Ban;
    let backend = VarnishBackend::new(&settings).context("VarnishBackend::new (ban)")?;
    let before = varnish.ban_count().context("counting bans")?;
    let clock = CpuClock::start(Some(varnish.pid()));
    let (seconds, stats) = crate::through_purger_targets(backend, tag_targets(&ban.tags)?).await?;
    let cpu = clock.stop();
    let bans = varnish.ban_count().context("counting bans")? - before;
    table.rows.push(
        Row::measured(
            "ours-tag-ban",
            format!(
                "Purger + VarnishBackend `cli`, tags = \"ban\" ({} ban(s) in {} batch(es))",
                grouped(bans),
                stats.batches
            ),
            n as u64,
            seconds,
        )
        .cpu(cpu)
        .ours(),
    );
    check_stats(&mut table, "ours, ban", &stats, n);
    verify_after(
        &mut table,
        "ours, ban",
        cache,
        &ban.pages,
        &ban.neighbours,
        true,
    )
    .await;

    // (b) ours, xkey.
    progress!(
        "varnishd: ours, tags = \"xkey\", {} tags",
        grouped(n as u64)
    );
    let mut settings = cli.clone();
    settings.mode = VarnishMode::Http;
    settings.servers = vec![
        varnish
            .http_addr()
            .parse()
            .context("varnishd's HTTP address")?,
    ];
    settings.tags = VarnishTags::Xkey;
    let (connections, pipeline) = (settings.concurrency, settings.pipeline);
    let backend = VarnishBackend::new(&settings).context("VarnishBackend::new (xkey)")?;
    let clock = CpuClock::start(Some(varnish.pid()));
    let (seconds, stats) = crate::through_purger_targets(backend, tag_targets(&xkey.tags)?).await?;
    let cpu = clock.stop();
    table.rows.push(
        Row::measured(
            "ours-tag-xkey",
            format!(
                "Purger + VarnishBackend `http`, tags = \"xkey\" (tags batched in xkey-purge values of ≤ 4,096 bytes, {connections} connections, pipeline {pipeline})"
            ),
            n as u64,
            seconds,
        )
        .cpu(cpu)
        .ours(),
    );
    check_stats(&mut table, "ours, xkey", &stats, n);
    verify_after(
        &mut table,
        "ours, xkey",
        cache,
        &xkey.pages,
        &xkey.neighbours,
        true,
    )
    .await;

    // (c) FOSHttpCache's way.
    progress!("varnishd: FOSHttpCache's way, {} tags", grouped(n as u64));
    let mut headers: Vec<String> = Vec::new();
    for tag in &fos.tags {
        match headers.last_mut() {
            Some(h) if h.len() + 1 + tag.len() <= FOS_HEADER_LENGTH => {
                h.push(' ');
                h.push_str(tag);
            }
            _ => headers.push(tag.clone()),
        }
    }
    let one = web::client(1)?;
    let clock = CpuClock::start(Some(varnish.pid()));
    let started = Instant::now();
    for header in &headers {
        let response = one
            .request(
                reqwest::Method::from_bytes(b"PURGE").context("the PURGE method")?,
                format!("{base}/"),
            )
            .header("xkey-purge", header)
            .send()
            .await
            .context("PURGE with xkey-purge")?;
        let status = response.status();
        let _ = response.bytes().await;
        if status != reqwest::StatusCode::OK {
            return Err(format!("PURGE with xkey-purge: {status}").into());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = clock.stop();
    table.rows.push(
        Row::measured(
            "fos-xkey",
            format!(
                "FOSHttpCache's way: tags in xkey-purge headers of ≤ 4,096 bytes ({} PURGEs, sequential)",
                grouped(headers.len() as u64)
            ),
            n as u64,
            seconds,
        )
        .cpu(cpu),
    );
    verify_after(
        &mut table,
        "FOSHttpCache's way",
        cache,
        &fos.pages,
        &fos.neighbours,
        true,
    )
    .await;

    // (d) the URL reference.
    progress!("varnishd: ours, {} URLs (the reference)", grouped(n as u64));
    let backend = VarnishBackend::new(&cli).context("VarnishBackend::new (urls)")?;
    let clock = CpuClock::start(Some(varnish.pid()));
    let (seconds, stats) = crate::through_purger(backend, &urls.pages).await?;
    let cpu = clock.stop();
    table.rows.push(
        Row::measured(
            "ours-urls",
            "for reference: the same Purger `cli` backend purging as many URLs (URL/s)",
            n as u64,
            seconds,
        )
        .cpu(cpu),
    );
    check_stats(&mut table, "ours, URLs", &stats, n);
    verify_after(
        &mut table,
        "ours, URLs",
        cache,
        &urls.pages,
        &urls.neighbours,
        true,
    )
    .await;
    table.notes.push(
        "each page carries one tag, so a tag purged is a page purged: the tag rates compare \
         with the URL rate directly; neighbours carry `<tag>-keep`, which an exact purge leaves"
            .to_owned(),
    );
    crate::check_not_evicted(&mut table, varnish)?;
    Ok(table)
}

/// The nginx of [`run_nginx`]: three sets cache their pages and neighbours, and its keys
/// zone holds them all (at 4,000 keys a megabyte, half what nginx documents; never less than
/// the harness's 16), so that nothing is evicted and a MISS still proves a purge.
pub(crate) fn nginx_config(config: &Config) -> NginxConfig {
    NginxConfig {
        keys_zone_megabytes: (3 * (config.urls + config.check)).div_ceil(4_000).max(16),
        ..NginxConfig::default()
    }
}

/// Megabytes of cache storage for the xkey varnishd of [`run`]: four methods cache their
/// pages and neighbours, at 2 KiB an object (as 1b's), and never less than the harness's 32.
pub(crate) fn storage(config: &Config) -> usize {
    let objects = 4 * (config.urls + config.check);
    objects.div_ceil(512).max(32)
}

fn check_stats(table: &mut Table, label: &str, stats: &cache_purge_hooks::BackendStats, n: usize) {
    table.check(
        stats.purged == n as u64 && stats.failed == 0,
        true,
        format!(
            "{label}: the Purger counted {} purged, {} failed",
            grouped(stats.purged),
            stats.failed
        ),
    );
}

/// Runs the nginx part of scenario 5: purging by tag through the tag→URL index (`tags =
/// "index"`), with the index in this process ([`MemoryTagIndex`]) and, where `redis-server`
/// runs, in Redis ([`RedisTagIndex`]), beside the URL rate of the same backend on the same
/// nginx. Every page `/i/<index>/<i>` is recorded under one tag `<index>:<i>` (what
/// `CacheTagsLayer::record_into` does as it serves the page; timed on its own), and its
/// neighbour `/i/<index>/<i>-keep` under `<index>:<i>-keep`.
pub(crate) async fn run_nginx(config: &Config, origin: &Origin, nginx: &Nginx) -> Result<Table> {
    let client = web::client(16)?;
    let base = format!("http://{}", nginx.addr());
    let cache = (&client, base.as_str(), NGINX_CACHE_HEADER, origin);
    let n = config.urls;
    let mut table = Table::new(
        "tags-nginx",
        format!(
            "5b. nginx purges by tag through the tag index: {} cached pages (one tag each) per index, nginx {}",
            grouped(n as u64),
            nginx.addr()
        ),
        "tag",
    );

    let mut settings = NginxSettings::default();
    settings.servers = vec![nginx.addr().parse().context("nginx's address")?];
    settings.purge_prefix = Some("/purge".parse().context("the purge prefix")?);
    settings.timeout = Duration::from_secs(5);
    let concurrency = settings.concurrency;
    let pipeline = settings.pipeline;
    let mut indexed = settings.clone();
    indexed.tags = NginxTags::Index;

    let redis = match Redis::start().await {
        Ok(redis) => Some(redis),
        Err(e) => {
            table.notes.push(format!(
                "no Redis row: redis-server could not be started ({e}); apt-get install -y redis-server"
            ));
            None
        }
    };
    // (name, what, row id, index)
    type Index = (&'static str, &'static str, &'static str, Arc<dyn TagIndex>);
    let mut indexes: Vec<Index> = vec![(
        "memory",
        "MemoryTagIndex",
        "ours-tag-index-memory",
        Arc::new(MemoryTagIndex::new()),
    )];
    if let Some(redis) = &redis {
        let index = RedisTagIndex::new(&redis.url()).context("RedisTagIndex::new")?;
        indexes.push((
            "redis",
            "RedisTagIndex",
            "ours-tag-index-redis",
            Arc::new(index),
        ));
    }

    // Every page of every method cached first, then synced (as scenario 2 does): the cache
    // files of pages cached for more than ~30 s are on disk, and unlinking files still being
    // written back would make whichever method runs first pay for the writeback.
    let urls = web::paths("/i/url", n);
    let url_neighbours = web::neighbours(&urls, config.check);
    let mut everything: Vec<String> = urls.iter().chain(&url_neighbours).cloned().collect();
    let sets: Vec<(Vec<String>, Vec<String>)> = indexes
        .iter()
        .map(|(name, ..)| {
            let pages = web::paths(&format!("/i/{name}"), n);
            let neighbours = web::neighbours(&pages, config.check);
            everything.extend(pages.iter().chain(&neighbours).cloned());
            (pages, neighbours)
        })
        .collect();
    progress!("nginx: warming {} pages", grouped(everything.len() as u64));
    web::warm(&client, &base, NGINX_CACHE_HEADER, &everything).await?;
    if config.sync {
        progress!("nginx: sync");
        tokio::task::spawn_blocking(web::sync)
            .await
            .map_err(|e| format!("sync: {e}"))?
            .map_err(|e| format!("sync after warming nginx: {e} (or run with --no-sync)"))?;
        table.notes.push(
            "nginx's cache files were synced to disk after warming (as in scenario 2)".to_owned(),
        );
    }

    for ((name, what, purge_id, index), (pages, neighbours)) in indexes.into_iter().zip(sets) {
        let all: Vec<String> = pages.iter().chain(&neighbours).cloned().collect();

        // What the tagging layer does as each page is served.
        let started = Instant::now();
        for page in &all {
            let tag = tag_of(name, page)?;
            let url = PurgeUrl::parse(page).with_context(|| format!("invalid URL {page}"))?;
            index
                .record(&url, &[tag], Duration::from_secs(600))
                .await
                .with_context(|| format!("recording {page} in the {what}"))?;
        }
        let seconds = started.elapsed().as_secs_f64();
        // A note, not a row: recording is another operation than purging, and the rows'
        // ratios compare purges.
        table.notes.push(format!(
            "the response side, {what}: TagIndex::record of {} pages (one tag each), in \
             sequence, took {} ({} pages/s, {} a page): what CacheTagsLayer::record_into adds \
             to serving a page",
            grouped(all.len() as u64),
            crate::report::duration(seconds),
            grouped((all.len() as f64 / seconds.max(1e-9)) as u64),
            crate::report::duration(seconds / all.len().max(1) as f64),
        ));

        progress!(
            "nginx: ours, tags = \"index\" ({what}), {} tags",
            grouped(n as u64)
        );
        let backend = NginxBackend::new(&indexed)
            .context("NginxBackend::new (index)")?
            .with_tag_index(Arc::clone(&index));
        let tags: Vec<String> = pages
            .iter()
            .map(|p| tag_of(name, p).map(|t| t.to_string()))
            .collect::<Result<_>>()?;
        let clock = CpuClock::start(Some(nginx.pid()));
        let (seconds, stats) = crate::through_purger_targets(backend, tag_targets(&tags)?).await?;
        let cpu = clock.stop();
        table.rows.push(
            Row::measured(
                purge_id,
                format!(
                    "Purger + NginxBackend `http`, tags = \"index\", {what}: a lookup per batch of tags, then one PURGE per URL ({concurrency} connections, pipeline {pipeline}), then forget"
                ),
                n as u64,
                seconds,
            )
            .cpu(cpu)
            .ours(),
        );
        check_stats(&mut table, &format!("ours, index ({what})"), &stats, n);
        verify_after(
            &mut table,
            &format!("ours, index ({what})"),
            cache,
            &pages,
            &neighbours,
            true,
        )
        .await;
        let left = index
            .urls(&tag_targets_of(&tags[..tags.len().min(100)])?)
            .await
            .with_context(|| format!("looking up purged tags in the {what}"))?;
        table.check(
            left.is_empty(),
            true,
            format!(
                "ours, index ({what}): the purged tags' URLs were forgotten ({} left of the first 100 tags)",
                left.len()
            ),
        );
    }

    // The URL reference: the same backend, no tags.
    progress!("nginx: ours, {} URLs (the reference)", grouped(n as u64));
    let backend = NginxBackend::new(&settings).context("NginxBackend::new (urls)")?;
    let clock = CpuClock::start(Some(nginx.pid()));
    let (seconds, stats) = crate::through_purger(backend, &urls).await?;
    let cpu = clock.stop();
    table.rows.push(
        Row::measured(
            "ours-urls",
            "for reference: the same NginxBackend `http` purging as many URLs (URL/s)",
            n as u64,
            seconds,
        )
        .cpu(cpu),
    );
    check_stats(&mut table, "ours, URLs", &stats, n);
    verify_after(
        &mut table,
        "ours, URLs",
        cache,
        &urls,
        &url_neighbours,
        true,
    )
    .await;
    table.notes.push(
        "each page is recorded under one tag, so a tag purged is a page purged: the tag rates \
         compare with the URL rate directly (the difference is the index: a lookup, and the \
         forget after the purge)"
            .to_owned(),
    );
    if let Some(redis) = redis {
        redis.stop().context("stopping redis-server")?;
    }
    Ok(table)
}

/// The tag a page of [`run_nginx`] is recorded under: `<index>:<i>` or `<index>:<i>-keep`.
fn tag_of(index: &str, page: &str) -> Result<Tag> {
    let last = page.rsplit('/').next().unwrap_or(page);
    Tag::parse(&format!("{index}:{last}")).with_context(|| format!("a tag for {page}"))
}

fn tag_targets_of(tags: &[String]) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|t| Tag::parse(t).with_context(|| format!("invalid tag {t}")))
        .collect()
}
