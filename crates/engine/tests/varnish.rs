//! The Varnish backend against a real varnishd (started per test by
//! `cache-purge-hooks-testing` on free loopback ports): every mode purges exactly what was
//! asked, neighbours stay cached, hostile URLs cannot widen a ban, and broken servers give
//! clear errors. (Purges from a SeaORM save, and saves that never wait for a broken server,
//! are in the root crate's tests/varnish.rs.)

use std::time::{Duration, Instant};

use cache_purge_hooks_engine::backend::varnish::{AdminClient, CliError, VarnishBackend};
use cache_purge_hooks_engine::backend::{Backend, Cause};
use cache_purge_hooks_engine::settings::{
    BanStyle, Pipeline, VarnishHttpMethod, VarnishMode, VarnishSettings,
};
use cache_purge_hooks_engine::{Delivery, Purger, Target, TargetKind};
use cache_purge_hooks_testing::{
    Origin, SilentServer, StatusServer, Varnish, assert_cached, assert_purged, refused_addr, warm,
};

fn cli_settings(varnish: &Varnish) -> VarnishSettings {
    let mut s = VarnishSettings::default();
    s.servers = vec![varnish.admin_addr().parse().unwrap()];
    s.secret_file = varnish.secret_file().to_path_buf();
    s.timeout = Duration::from_secs(2);
    s
}

fn http_settings(varnish: &Varnish, method: VarnishHttpMethod) -> VarnishSettings {
    let mut s = cli_settings(varnish);
    s.mode = VarnishMode::Http;
    s.servers = vec![varnish.http_addr().parse().unwrap()];
    s.http_method = method;
    s
}

fn urls(list: &[&str]) -> Vec<Target> {
    list.iter().map(|u| Target::url(u).unwrap()).collect()
}

/// The common scenario: /foo and /a?x=1 purged through a Purger; /foobar and /a?x=2 kept.
async fn purges_exactly_and_keeps_neighbours(
    settings: impl Fn(&Varnish) -> VarnishSettings,
) -> (Varnish, Origin) {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    warm(&varnish, &["/foo", "/foobar", "/a?x=1", "/a?x=2"]).await;

    let backend = VarnishBackend::new(&settings(&varnish)).unwrap();
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("edge", backend)
        .build()
        .unwrap();
    purger.purge(urls(&["/foo", "/a?x=1"])).await;
    purger.flush().await;
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.failed), (2, 0), "{stats:?}");

    assert_purged(&varnish, &origin, "/foo").await;
    assert_purged(&varnish, &origin, "/a?x=1").await;
    assert_cached(&varnish, "/foobar").await;
    assert_cached(&varnish, "/a?x=2").await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    (varnish, origin)
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_mode_bans_one_anchored_alternation() {
    let (varnish, _origin) = purges_exactly_and_keeps_neighbours(cli_settings).await;
    assert_eq!(
        varnish.ban_list().unwrap(),
        [r"req.url ~ ^(?:/foo|/a\?x=1)$"]
    );
    assert_eq!(varnish.ban_count().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn varnishadm_mode_forks_the_configured_binary() {
    let (varnish, _origin) = purges_exactly_and_keeps_neighbours(|v| {
        let mut s = cli_settings(v);
        s.mode = VarnishMode::Varnishadm;
        s
    })
    .await;
    assert_eq!(
        varnish.ban_list().unwrap(),
        [r"req.url ~ ^(?:/foo|/a\?x=1)$"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lurker_style_bans_test_object_headers() {
    let (varnish, _origin) = purges_exactly_and_keeps_neighbours(|v| {
        let mut s = cli_settings(v);
        s.ban_style = BanStyle::Lurker;
        s
    })
    .await;
    assert_eq!(
        varnish.ban_list().unwrap(),
        [r"obj.http.x-url ~ ^(?:/foo|/a\?x=1)$"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_purge_mode_purges_each_url() {
    let (varnish, _origin) =
        purges_exactly_and_keeps_neighbours(|v| http_settings(v, VarnishHttpMethod::Purge)).await;
    assert_eq!(varnish.ban_list().unwrap(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_batch_goes_pipelined_and_purges_every_url_and_no_neighbour() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    let paths: Vec<String> = (0..300).map(|i| format!("/piped/{i}?page={i}")).collect();
    let neighbours: Vec<String> = (0..300)
        .step_by(15)
        .map(|i| format!("/piped/{i}-keep"))
        .collect();
    let all: Vec<&str> = paths
        .iter()
        .chain(&neighbours)
        .map(String::as_str)
        .collect();
    warm(&varnish, &all).await;
    // Three connections, eight requests written at once on each: 300 purges in 38 bursts,
    // every answer matched to its request.
    for pipeline in [8, 1] {
        let mut settings = http_settings(&varnish, VarnishHttpMethod::Purge);
        settings.concurrency = std::num::NonZeroUsize::new(3).unwrap();
        settings.pipeline = Pipeline::new(pipeline).unwrap();
        let backend = VarnishBackend::new(&settings).unwrap();
        let batch: Vec<Target> = paths.iter().map(|p| Target::url(p).unwrap()).collect();
        backend.purge(&batch).await.unwrap();
        for path in &paths {
            assert_purged(&varnish, &origin, path).await;
        }
        for path in &neighbours {
            assert_cached(&varnish, path).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_ban_mode_sends_the_regex_in_a_header() {
    let (varnish, _origin) =
        purges_exactly_and_keeps_neighbours(|v| http_settings(v, VarnishHttpMethod::Ban)).await;
    assert_eq!(
        varnish.ban_list().unwrap(),
        [r"obj.http.x-url ~ ^(?:/foo|/a\?x=1)$"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn site_domain_and_absolute_urls_limit_bans_to_their_host() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    for host in ["a.example", "b.example"] {
        for path in ["/p", "/q"] {
            varnish.get_with_host(host, path).await.unwrap();
            assert!(varnish.get_with_host(host, path).await.unwrap().is_hit());
        }
    }
    let mut settings = cli_settings(&varnish);
    settings.site_domain = Some("a.example".parse().unwrap());
    let backend = VarnishBackend::new(&settings).unwrap();
    // A path goes to the site domain; an absolute URL to its own host.
    backend
        .purge(&urls(&["/p", "http://b.example/q"]))
        .await
        .unwrap();
    assert!(
        !varnish
            .get_with_host("a.example", "/p")
            .await
            .unwrap()
            .is_hit()
    );
    assert!(
        varnish
            .get_with_host("b.example", "/p")
            .await
            .unwrap()
            .is_hit()
    );
    assert!(
        varnish
            .get_with_host("a.example", "/q")
            .await
            .unwrap()
            .is_hit()
    );
    assert!(
        !varnish
            .get_with_host("b.example", "/q")
            .await
            .unwrap()
            .is_hit()
    );
    assert_eq!(varnish.ban_count().unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn prefixes_and_everything() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    warm(&varnish, &["/blog/a", "/blog/b", "/blogger", "/other"]).await;
    let backend = VarnishBackend::new(&cli_settings(&varnish)).unwrap();
    assert!(
        backend.capabilities().supports(TargetKind::Prefix)
            && backend.capabilities().supports(TargetKind::Everything)
    );

    backend
        .purge(&[Target::prefix("/blog/").unwrap()])
        .await
        .unwrap();
    assert_purged(&varnish, &origin, "/blog/a").await;
    assert_purged(&varnish, &origin, "/blog/b").await;
    assert_cached(&varnish, "/blogger").await;
    assert_cached(&varnish, "/other").await;

    backend.purge(&[Target::Everything]).await.unwrap();
    assert_purged(&varnish, &origin, "/blogger").await;
    assert_purged(&varnish, &origin, "/other").await;
    assert_eq!(
        varnish.ban_list().unwrap(),
        ["req.url ~ ^/blog/", "obj.status != 0"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn several_servers_are_all_purged() {
    let origin = Origin::start().unwrap();
    let (one, two) = tokio::join!(Varnish::start(&origin), Varnish::start(&origin));
    let (one, two) = (one.unwrap(), two.unwrap());
    warm(&one, &["/x", "/y"]).await;
    warm(&two, &["/x", "/y"]).await;
    let mut settings = cli_settings(&one);
    settings.servers = vec![
        one.admin_addr().parse().unwrap(),
        two.admin_addr().parse().unwrap(),
    ];
    // One secret for both, as in a real cluster: varnishd reads its -S file at every
    // authentication, so the second instance accepts the first one's secret once copied.
    std::fs::copy(one.secret_file(), two.secret_file()).unwrap();
    let backend = VarnishBackend::new(&settings).unwrap();
    backend.purge(&urls(&["/x"])).await.unwrap();
    for v in [&one, &two] {
        assert!(!v.get("/x").await.unwrap().is_hit());
        assert!(v.get("/y").await.unwrap().is_hit());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_server_down_does_not_stop_the_others() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    warm(&varnish, &["/x"]).await;
    let down = refused_addr();
    let mut settings = cli_settings(&varnish);
    settings.servers = vec![down.parse().unwrap(), varnish.admin_addr().parse().unwrap()];
    let backend = VarnishBackend::new(&settings).unwrap();
    let err = backend.purge(&urls(&["/x"])).await.unwrap_err();
    assert_eq!(err.server(), Some(down.as_str()));
    assert_eq!(err.cause(), &Cause::Unreachable);
    assert!(err.message().contains("Connection refused"), "{err}");
    assert!(
        !varnish.get("/x").await.unwrap().is_hit(),
        "the live server was purged"
    );
}

/// URLs written to break a naive ban: every regex metacharacter, quotes, backslashes,
/// newlines (a second CLI command), spaces, `%`-escapes, non-ASCII, and a very long one.
const HOSTILE: &[&str] = &[
    "/q?a=1&b=2",
    "/dot.html",
    "/star*",
    "/plus+plus",
    "/paren(1)",
    "/brackets[0]",
    "/braces{2}",
    "/pipe|x",
    "/caret^x",
    "/dollar$x",
    "/back\\slash",
    "/quote\"x",
    "/single'x",
    "/space x",
    "/newline\nban obj.status != 0",
    "/tab\tx",
    "/percent%2Fx",
    "/percent%zz",
    "/caf\u{e9}",
    "/\u{65e5}\u{672c}",
    "/hash#fragment",
    "/semi;x=1",
];

#[tokio::test(flavor = "multi_thread")]
async fn hostile_urls_ban_exactly_themselves() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    let long = format!("/long/{}", "ab.(c)?".repeat(700));
    let mut inputs: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    inputs.push(long);
    let targets: Vec<Target> = inputs.iter().map(|u| Target::url(u).unwrap()).collect();

    // What a browser sends for each (the normalised form), and neighbours a sloppy regex
    // would also hit: a longer URL, the URL with one character changed, a plain `/x`.
    let sent: Vec<String> = targets
        .iter()
        .map(|t| t.as_url().unwrap().path_and_query().to_owned())
        .collect();
    let mut neighbours: Vec<String> = Vec::new();
    for s in &sent {
        neighbours.push(format!("{s}x"));
        neighbours.push(format!("{}Z", &s[..s.len() - 1]));
    }
    neighbours.push("/x".into());
    neighbours.push("/".into());
    let all: Vec<&str> = sent.iter().chain(&neighbours).map(String::as_str).collect();
    warm(&varnish, &all).await;

    let settings = cli_settings(&varnish);
    let backend = VarnishBackend::new(&settings).unwrap();
    let expected: Vec<String> = backend
        .bans_for(&targets)
        .iter()
        .map(|b| b.expression())
        .collect();
    backend.purge(&targets).await.unwrap();

    // Exactly the intended bans, as varnishd itself lists them.
    let mut listed = varnish.ban_list().unwrap();
    listed.reverse(); // ban.list is newest first
    assert_eq!(listed, expected);
    // The raw inputs, requested the way a browser sends them (reqwest follows the same
    // WHATWG URL rules), are all purged: the normalised form is what clients really send.
    for (raw, sent) in inputs.iter().zip(&sent) {
        let before = origin.fetches(sent);
        let page = varnish.get(raw).await.unwrap();
        assert!(!page.is_hit(), "{raw:?} should have been purged: {page:?}");
        assert_eq!(
            origin.fetches(sent),
            before + 1,
            "{raw:?} fetched again as {sent}"
        );
    }
    for n in &neighbours {
        assert_cached(&varnish, n).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_urls_never_widen_a_ban() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    let backend = VarnishBackend::new(&cli_settings(&varnish)).unwrap();
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = "/[ -~\u{e9}\u{65e5}\n]{1,30}";
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |input| {
            handle.block_on(async {
                // Inputs a browser would read as another host (`//x`, `/\\x`) are refused.
                let Ok(target) = Target::url(&input) else {
                    return Ok(());
                };
                let sent = target.as_url().unwrap().path_and_query().to_owned();
                let neighbour = format!("{sent}-n");
                warm(&varnish, &[&sent, &neighbour]).await;
                backend
                    .purge(std::slice::from_ref(&target))
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(
                    !varnish.get(&sent).await.unwrap().is_hit(),
                    "{sent} not purged"
                );
                prop_assert!(
                    varnish.get(&neighbour).await.unwrap().is_hit(),
                    "{neighbour} purged too"
                );
                Ok(())
            })
        })
    });
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_client_refuses_a_second_command_in_one_line() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    let secret = std::fs::read(varnish.secret_file()).unwrap();
    let mut cli =
        AdminClient::connect(&varnish.admin_addr(), Some(&secret), Duration::from_secs(2))
            .await
            .unwrap();
    let err = cli.command("ping\nban obj.status != 0").await.unwrap_err();
    assert!(matches!(err, CliError::Protocol(_)), "{err}");
    assert_eq!(varnish.ban_count().unwrap(), 0);
    // A refused ban is a clear, permanent error from varnishd itself.
    let err = cli.command("ban req.url ~ \"(\"").await.unwrap_err();
    assert!(
        matches!(err, CliError::Refused { status: 106, .. }),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_is_a_permanent_authentication_error() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("secret");
    std::fs::write(&wrong, "not-the-secret\n").unwrap();
    for mode in [VarnishMode::Cli, VarnishMode::Varnishadm] {
        let mut settings = cli_settings(&varnish);
        settings.mode = mode;
        settings.secret_file = wrong.clone();
        let backend = VarnishBackend::new(&settings).unwrap();
        let err = backend.purge(&urls(&["/x"])).await.unwrap_err();
        assert_eq!(err.cause(), &Cause::Authentication, "{mode:?}: {err}");
        assert!(!err.is_transient(), "{mode:?}: {err}");
        assert_eq!(err.server(), Some(varnish.admin_addr().as_str()));
        assert!(
            err.message().contains("authentication failed"),
            "{mode:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_and_failing_servers_give_clear_errors_in_time() {
    let silent = SilentServer::start().unwrap();
    let broken = StatusServer::start(503, "backend fetch failed").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s\n").unwrap();
    let timeout = Duration::from_millis(500);
    let mut cases = Vec::new();
    for mode in [VarnishMode::Cli, VarnishMode::Http] {
        let mut s = VarnishSettings::default();
        s.mode = mode;
        s.secret_file = secret.clone();
        s.timeout = timeout;
        s.servers = vec![silent.addr().parse().unwrap()];
        cases.push((
            format!("{mode:?} silent"),
            s.clone(),
            "timed out|no answer within",
        ));
        s.servers = vec![refused_addr().parse().unwrap()];
        cases.push((format!("{mode:?} refused"), s.clone(), "Connection refused"));
    }
    let mut s = VarnishSettings::default();
    s.mode = VarnishMode::Http;
    s.servers = vec![broken.addr().parse().unwrap()];
    cases.push((
        "http 503".into(),
        s,
        "answered 503 Service Unavailable: backend fetch failed",
    ));

    for (label, settings, expected) in cases {
        let backend = VarnishBackend::new(&settings).unwrap();
        let started = Instant::now();
        let err = backend.purge(&urls(&["/x"])).await.unwrap_err();
        assert!(
            started.elapsed() < timeout * 6,
            "{label}: took {:?}",
            started.elapsed()
        );
        assert_eq!(
            err.server(),
            Some(settings.servers[0].to_string().as_str()),
            "{label}"
        );
        assert!(err.is_transient(), "{label}: {err}");
        assert!(
            expected.split('|').any(|e| err.message().contains(e)),
            "{label}: {err}"
        );
    }
    assert!(broken.requests() >= 1);
}

#[test]
fn the_documented_vcl_is_the_one_tested() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/varnish.md"
    ))
    .unwrap();
    let start = docs
        .find("```vcl\nvcl 4.1;")
        .expect("docs/varnish.md has the full VCL")
        + 7;
    let end = start + docs[start..].find("\n```").unwrap();
    assert_eq!(
        &docs[start..end],
        cache_purge_hooks_testing::HARNESS_VCL
            .replace("@ORIGIN_PORT@", "8080")
            .trim_end()
    );
}

// current_thread: the subscriber set for this thread also sees the backend worker's events.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_purge_is_logged_with_backend_server_and_reason() {
    let (captured, _guard) = cache_purge_hooks_testing::logs::capture();

    let down = refused_addr();
    let settings = cache_purge_hooks_engine::Settings::from_toml_str(&format!(
        "delivery = \"immediate\"\n[backends.edge]\nkind = \"varnish\"\nmode = \"http\"\nservers = [\"{down}\"]\n"
    ))
    .unwrap();
    let purger = Purger::from_settings(&settings).unwrap();
    purger.purge(urls(&["/posts/a"])).await;
    purger.flush().await;

    let text = captured.text();
    let line = text
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("purge failed"))
        .unwrap_or_else(|| panic!("no ERROR event: {text}"));
    assert!(
        line.contains("backend=\"edge\"") || line.contains("backend=edge"),
        "{line}"
    );
    assert!(line.contains(&format!("{down}: cannot connect")), "{line}");
    assert!(line.contains("Connection refused"), "{line}");
    assert!(line.contains("/posts/a"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_settings_file_selects_varnish_end_to_end() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    warm(&varnish, &["/from-settings", "/from-settings-not"]).await;
    let settings = cache_purge_hooks_engine::Settings::from_toml_str(&format!(
        "delivery = \"immediate\"\n[backends.edge]\nkind = \"varnish\"\nservers = [\"{}\"]\nsecret_file = \"{}\"\nban_style = \"lurker\"\n",
        varnish.admin_addr(),
        varnish.secret_file().display()
    ))
    .unwrap();
    let purger = Purger::from_settings(&settings).unwrap();
    purger.purge(urls(&["/from-settings"])).await;
    purger.flush().await;
    assert_purged(&varnish, &origin, "/from-settings").await;
    assert_cached(&varnish, "/from-settings-not").await;
    assert_eq!(
        varnish.ban_list().unwrap(),
        [r"obj.http.x-url ~ ^/from-settings$"]
    );
}
