//! Scenario 1: Varnish bans through the admin CLI.
//!
//! - ours: a `Purger` with the `VarnishBackend` in `cli` mode (one authenticated connection,
//!   batches of URLs as one anchored alternation per ban);
//! - the seed: `varnishadm -S secret -T addr ban req.url ~ <url>` forked once per URL;
//! - one ban per URL over one native connection (the public `AdminClient`), no batching: what
//!   a native client without batching does, and the bans' own cost.
//!
//! Each method has its own URLs, all cached before the first method runs. Each method is
//! checked right after it runs (every purged URL a MISS, neighbours HITs), before the next
//! one adds its bans: a lookup tests the object against every newer ban, so the checks of a
//! method are not slowed by the bans of the next.

use std::time::{Duration, Instant};

use cache_purge_hooks::backend::varnish::{AdminClient, BanBuilder, VarnishBackend};
use cache_purge_hooks::settings::{BanStyle, VarnishSettings};
use cache_purge_hooks_testing::{Origin, Varnish};

use crate::cpu::CpuClock;
use crate::report::{Row, Table, grouped};
use crate::{Config, Context, Result, check_interrupted, progress, verify_after, web};

const CACHE_HEADER: &str = "x-cache";

/// Runs scenario 1.
pub(crate) async fn run(config: &Config, origin: &Origin, varnish: &Varnish) -> Result<Table> {
    let client = web::client(16)?;
    let base = format!("http://{}", varnish.http_addr());
    let cache = (&client, base.as_str(), CACHE_HEADER, origin);
    let ours = web::paths("/v/ours", config.urls);
    let seed = web::paths("/v/seed", config.fork_sample);
    let native = web::paths("/v/native", config.urls);
    let neighbours = |set: &[String]| web::neighbours(set, config.check);

    let mut table = Table::new(
        "varnish",
        format!(
            "1. Varnish bans (admin CLI): {} cached URLs per method, varnishd {}",
            grouped(config.urls as u64),
            varnish.admin_addr()
        ),
        "URL",
    );

    let mut all: Vec<String> = Vec::new();
    for set in [&ours, &seed, &native] {
        all.extend(set.iter().cloned());
        all.extend(neighbours(set));
    }
    progress!("varnishd: warming {} URLs", grouped(all.len() as u64));
    web::warm(&client, &base, CACHE_HEADER, &all).await?;
    for (label, set) in [("ours", &ours), ("seed", &seed), ("native", &native)] {
        let sample = web::sample(set, config.check);
        let gets = web::get_all(&client, &base, CACHE_HEADER, &sample, 8).await;
        table.check(
            gets.hits == sample.len(),
            true,
            format!(
                "{label}: before purging, {}/{} sampled URLs are HITs",
                gets.hits,
                sample.len()
            ),
        );
    }
    let ban_count = || varnish.ban_count().context("counting bans (varnishstat)");

    // (a) ours.
    progress!("varnishd: ours, {} URLs", grouped(ours.len() as u64));
    let mut settings = VarnishSettings::default();
    settings.servers = vec![
        varnish
            .admin_addr()
            .parse()
            .context("varnishd's admin address")?,
    ];
    settings.secret_file = varnish.secret_file().to_path_buf();
    settings.timeout = Duration::from_secs(2);
    let backend = VarnishBackend::new(&settings).context("VarnishBackend::new")?;
    let before = ban_count()?;
    let clock = CpuClock::start(Some(varnish.pid()));
    let (seconds, stats) = crate::through_purger(backend, &ours).await?;
    let cpu = clock.stop();
    let ours_bans = ban_count()? - before;
    table.rows.push(
        Row::measured(
            "ours",
            format!(
                "Purger + VarnishBackend `cli` ({} ban(s) in {} batch(es))",
                grouped(ours_bans),
                stats.batches
            ),
            ours.len() as u64,
            seconds,
        )
        .cpu(cpu)
        .ours(),
    );
    table.check(
        stats.purged == ours.len() as u64 && stats.failed == 0,
        true,
        format!(
            "ours: the Purger counted {} purged, {} failed",
            grouped(stats.purged),
            stats.failed
        ),
    );
    verify_after(&mut table, "ours", cache, &ours, &neighbours(&ours), true).await;

    // (b) the seed: one varnishadm process per URL.
    progress!("varnishd: the seed's way, {} varnishadm forks", seed.len());
    let bin = web::find_program("varnishadm", &["/usr/bin/varnishadm"])
        .ok_or("varnishadm not found: apt-get install -y varnish")?;
    let secret = varnish.secret_file().to_path_buf();
    let addr = varnish.admin_addr();
    let before = ban_count()?;
    let urls = seed.clone();
    let clock = CpuClock::start(Some(varnish.pid()));
    let seconds = tokio::task::spawn_blocking(move || -> Result<f64> {
        let started = Instant::now();
        for url in &urls {
            check_interrupted()?;
            web::varnishadm_ban(&bin, &secret, &addr, url)?;
        }
        Ok(started.elapsed().as_secs_f64())
    })
    .await
    .context("the varnishadm loop")??;
    let cpu = clock.stop();
    let seed_bans = ban_count()? - before;
    table.rows.push(
        Row::measured(
            "seed-varnishadm",
            format!(
                "seed: fork `varnishadm ban req.url ~ <url>` per URL ({} bans)",
                grouped(seed_bans)
            ),
            seed.len() as u64,
            seconds,
        )
        .cpu(cpu),
    );
    verify_after(&mut table, "seed", cache, &seed, &neighbours(&seed), false).await;

    // (c) one ban per URL over one native connection.
    progress!(
        "varnishd: one ban per URL on one connection, {} URLs",
        grouped(native.len() as u64)
    );
    let secret = std::fs::read(varnish.secret_file()).context("reading the varnish secret")?;
    let targets = crate::targets(&native)?;
    let builder = BanBuilder {
        style: BanStyle::ReqUrl,
        url_header: "x-url".to_owned(),
        host_header: "x-host".to_owned(),
        site_domain: None,
        max_length: 8000,
        tag_header: None,
    };
    let before = ban_count()?;
    let bans_at_start = before;
    let clock = CpuClock::start(Some(varnish.pid()));
    let started = Instant::now();
    let mut cli =
        AdminClient::connect(&varnish.admin_addr(), Some(&secret), Duration::from_secs(5))
            .await
            .context("connecting to varnishd's admin port")?;
    for target in &targets {
        for ban in builder.bans(std::slice::from_ref(target)).0 {
            cli.command(&ban.cli_command())
                .await
                .with_context(|| format!("ban {}", ban.expression()))?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = clock.stop();
    drop(cli);
    let native_bans = ban_count()? - before;
    table.rows.push(
        Row::measured(
            "one-ban-per-url",
            format!(
                "one ban per URL, one AdminClient connection, no batching ({} bans)",
                grouped(native_bans)
            ),
            native.len() as u64,
            seconds,
        )
        .cpu(cpu),
    );
    verify_after(
        &mut table,
        "one ban per URL",
        cache,
        &native,
        &neighbours(&native),
        true,
    )
    .await;

    let total = ban_count()?;
    let nuked = crate::check_not_evicted(&mut table, varnish)?;
    let objects = varnish
        .stat("MAIN.n_object")
        .context("reading MAIN.n_object")?;
    table.notes.push(format!(
        "bans added: ours {}, seed {}, one-per-URL {}; the ban list held {} before the \
         one-per-URL run and {} after (`req.url` bans stay until the objects expire, and \
         varnishd compares each new ban with the list: ban_dups)",
        grouped(ours_bans),
        grouped(seed_bans),
        grouped(native_bans),
        grouped(bans_at_start),
        grouped(total)
    ));
    table.notes.push(format!(
        "the seed's rate is over {} forks (a fork per URL is slow); its bans also hit every \
         URL containing the purged one",
        seed.len()
    ));
    table.notes.push(format!(
        "varnishd: {} objects in cache at the end, {} evicted for lack of space (LRU nuked)",
        grouped(objects),
        grouped(nuked)
    ));
    Ok(table)
}
