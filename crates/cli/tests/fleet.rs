//! `cache-purge agent` and `cache-purge fleet status` as real processes: a real
//! `nats-server -js`, real nginx (files mode, each its own cache dir) and varnishd nodes on
//! loopback, one agent process per node, and the application's side as a `kind = "nats"`
//! backend in the test. What is checked is what a person would: the page is a MISS with fresh
//! content on every node, its neighbour still a HIT; the agents exit 0 on SIGTERM; a killed
//! agent's node ends with every page fresh.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use cache_purge_hooks_engine::backend::NatsBackend;
use cache_purge_hooks_engine::backend::nats::{connect, stream_config};
use cache_purge_hooks_engine::settings::{NatsSettings, NatsTls};
use cache_purge_hooks_engine::{Delivery, Purger, Target};
use cache_purge_hooks_testing::{
    CacheServer, Nats, NatsConfig, Nginx, NginxConfig, Origin, Varnish, assert_cached,
    assert_purged, warm,
};
use serde_json::Value;

/// The fleet of one test: its NATS server, the stream's names, the publishing purger.
struct Fleet {
    nats: Nats,
    settings: NatsSettings,
    bucket: String,
    dir: tempfile::TempDir,
    js: jetstream::Context,
}

impl Fleet {
    async fn start(max_age: Duration) -> Fleet {
        Self::start_with(max_age, NatsConfig::default()).await
    }

    /// A fleet whose server wants the token of `config` (the test passes it to the agents as
    /// `CACHE_PURGE__AGENT__AUTH__TOKEN`) and TLS, with its CA in every node's settings.
    async fn start_with(max_age: Duration, config: NatsConfig) -> Fleet {
        let token = config.token.clone();
        let nats = Nats::start_with(config).await.unwrap();
        let mut settings = NatsSettings::default();
        settings.auth.token = token.map(|t| t.parse().unwrap());
        if let Some(files) = nats.tls() {
            let mut tls = NatsTls::default();
            tls.ca_file = Some(files.ca_file.clone());
            settings.tls = Some(tls);
        }
        settings.servers = vec![nats.addr().parse().unwrap()];
        settings.stream = Nats::unique_name("CPH_FLEET_").parse().unwrap();
        settings.subject_prefix = Nats::unique_name("cph-fleet-").parse().unwrap();
        settings.max_age = max_age;
        settings.timeout = Duration::from_secs(2);
        let js = jetstream::new(connect(&settings, "test").await.unwrap());
        // The stream exists before the agents start (the first publish would create it too).
        js.create_stream(stream_config(&settings)).await.unwrap();
        Fleet {
            nats,
            settings,
            bucket: Nats::unique_name("cph_nodes_"),
            dir: tempfile::tempdir().unwrap(),
            js,
        }
    }

    /// The application's purger: one `kind = "nats"` backend publishing to group `all`, at
    /// most `max_batch` targets per message.
    fn publisher(&self, max_batch: usize) -> Purger {
        self.group_publisher("all", max_batch)
    }

    /// A publisher to this group.
    fn group_publisher(&self, group: &str, max_batch: usize) -> Purger {
        let mut settings = self.settings.clone();
        settings.group = group.parse().unwrap();
        settings.max_batch = max_batch.try_into().unwrap();
        Purger::builder()
            .delivery(Delivery::Immediate)
            .backend("fleet", NatsBackend::new(&settings).unwrap())
            .build()
            .unwrap()
    }

    /// The settings file of node `name` with these `[backends.*]` tables.
    fn node_settings(&self, name: &str, backends: &str) -> PathBuf {
        self.node_settings_with(name, backends, "")
    }

    /// The settings file of node `name`, with more `[agent]` keys.
    fn node_settings_with(&self, name: &str, backends: &str, agent: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        let tls = match self.nats.tls() {
            Some(files) => format!("\n[agent.tls]\nca_file = \"{}\"\n", files.ca_file.display()),
            None => String::new(),
        };
        let text = format!(
            "{backends}\n[agent]\nnode = \"{name}\"\nservers = [\"{}\"]\nstream = \"{}\"\n\
             subject_prefix = \"{}\"\nstate_bucket = \"{}\"\nack_wait = \"2s\"\nheartbeat = \"200ms\"\n{agent}{tls}",
            self.nats.addr(),
            self.settings.stream,
            self.settings.subject_prefix,
            self.bucket
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The stream's last sequence.
    async fn last_sequence(&self) -> u64 {
        let stream = self
            .js
            .get_stream(self.settings.stream.as_str())
            .await
            .unwrap();
        stream.get_info().await.unwrap().state.last_sequence
    }

    /// The node's consumer: (acked up to, deliveries made, pending + unacked).
    async fn consumer(&self, node: &str) -> Option<(u64, u64, u64)> {
        let stream = self
            .js
            .get_stream(self.settings.stream.as_str())
            .await
            .ok()?;
        let info = stream
            .consumer_info(format!("cache-purge-agent-{node}"))
            .await
            .ok()?;
        Some((
            info.ack_floor.stream_sequence,
            info.delivered.consumer_sequence,
            info.num_pending + info.num_ack_pending as u64,
        ))
    }

    /// Waits until the node's agent has created its consumer.
    async fn wait_for_consumer(&self, node: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.consumer(node).await.is_none() {
            if Instant::now() >= deadline {
                let logs: Vec<String> = std::fs::read_dir(self.dir.path())
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(node))
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect();
                panic!("agent {node} made no consumer:\n{}", logs.join("\n---\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the node's agent has acked every message of its groups on the stream
    /// (nothing pending, nothing unacked; a filtered consumer's ack floor stays at its own
    /// last message).
    async fn wait_until_applied(&self, node: &str, timeout: Duration) {
        let last = self.last_sequence().await;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, _, 0)) = self.consumer(node).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "agent {node} did not apply up to {last}: {:?}",
                self.consumer(node).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One `cache-purge agent` process.
struct AgentProcess {
    child: tokio::process::Child,
    log: PathBuf,
}

impl AgentProcess {
    fn start(config: &Path, dir: &Path, node: &str) -> AgentProcess {
        Self::start_with_env(config, dir, node, &[])
    }

    /// An agent with these environment variables set.
    fn start_with_env(config: &Path, dir: &Path, node: &str, env: &[(&str, &str)]) -> AgentProcess {
        let log = dir.join(format!("{node}-{}.log", fastrand_suffix()));
        let stderr = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cache-purge"))
            .args(["agent", "--json", "-vv", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env_remove("CACHE_PURGE_CONFIG")
            .env_remove("CACHE_PURGE_NODE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("the cache-purge binary starts");
        AgentProcess { child, log }
    }

    fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("the agent runs") as libc::pid_t;
        // SAFETY: kill(2) on the PID of our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// SIGTERM, then the exit code and the summary it printed.
    async fn terminate(mut self) -> (i32, Value) {
        self.signal(libc::SIGTERM);
        let output = tokio::time::timeout(Duration::from_secs(10), async {
            let status = self.child.wait().await.unwrap();
            let mut stdout = String::new();
            if let Some(mut pipe) = self.child.stdout.take() {
                tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut stdout)
                    .await
                    .unwrap();
            }
            (status, stdout)
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the agent did not exit within 10 s of SIGTERM: {}",
                self.log()
            )
        });
        let code = output.0.code().unwrap_or(-1);
        let summary = serde_json::from_str(&output.1)
            .unwrap_or_else(|e| panic!("no JSON summary ({e}): {:?}\n{}", output.1, self.log()));
        (code, summary)
    }

    /// SIGKILL: no chance to ack, hand back or write its state.
    async fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait().await;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn fastrand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `[backends.cache]` for an nginx started by the harness, in files mode on its own cache dir.
fn nginx_files_backend(nginx: &Nginx) -> String {
    format!(
        "[backends.cache]\nkind = \"nginx\"\nmode = \"files\"\ncache_dir = \"{}\"\nlevels = \"1:2\"\nkey_template = \"$uri$is_args$args\"\n",
        nginx.cache_dir().display()
    )
}

/// `[backends.cache]` for a varnishd started by the harness, over its admin CLI.
fn varnish_cli_backend(varnish: &Varnish) -> String {
    format!(
        "[backends.cache]\nkind = \"varnish\"\nservers = [\"{}\"]\nsecret_file = \"{}\"\ntimeout = \"2s\"\n",
        varnish.admin_addr(),
        varnish.secret_file().display()
    )
}

/// `cache-purge fleet status --json` with this settings file.
async fn fleet_status(config: &Path) -> (i32, Value) {
    fleet_status_with_env(config, &[]).await
}

/// [`fleet_status`] with these environment variables set.
async fn fleet_status_with_env(config: &Path, env: &[(&str, &str)]) -> (i32, Value) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_cache-purge"))
        .args(["fleet", "status", "--json", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .env_remove("CACHE_PURGE_CONFIG")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "fleet status printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), json)
}

async fn save(purger: &Purger, path: &str) {
    purger.purge([Target::url(path).unwrap()]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_save_purges_the_page_on_three_nginx_and_one_varnish_node_and_keeps_the_neighbour() {
    let origin = Origin::start().unwrap();
    let (fleet, n1, n2, n3, varnish) = tokio::join!(
        Fleet::start(Duration::from_secs(3600)),
        Nginx::start(&origin, NginxConfig::default()),
        Nginx::start(&origin, NginxConfig::default()),
        Nginx::start(&origin, NginxConfig::default()),
        Varnish::start(&origin),
    );
    let (n1, n2, n3, varnish) = (n1.unwrap(), n2.unwrap(), n3.unwrap(), varnish.unwrap());
    let nodes: [(&str, String); 4] = [
        ("nginx-1", nginx_files_backend(&n1)),
        ("nginx-2", nginx_files_backend(&n2)),
        ("nginx-3", nginx_files_backend(&n3)),
        ("varnish-1", varnish_cli_backend(&varnish)),
    ];
    let mut agents = Vec::new();
    for (name, backend) in &nodes {
        let config = fleet.node_settings(name, backend);
        agents.push((*name, AgentProcess::start(&config, fleet.dir.path(), name)));
    }
    for (name, _) in &nodes {
        fleet.wait_for_consumer(name).await;
    }
    let caches: [&dyn Warmable; 4] = [&n1, &n2, &n3, &varnish];
    for cache in caches {
        cache.warm(&["/posts/a", "/posts/ab"]).await;
    }

    let purger = fleet.publisher(500);
    save(&purger, "/posts/a").await;
    purger.flush().await;
    for (name, _) in &nodes {
        fleet
            .wait_until_applied(name, Duration::from_secs(10))
            .await;
    }

    for cache in caches {
        cache.purged(&origin, "/posts/a").await;
        cache.cached("/posts/ab").await;
    }

    // Every node reports in: healthy, nothing left to purge.
    let status_config = fleet.node_settings("status", "");
    let (code, status) = fleet_status(&status_config).await;
    assert_eq!(code, 0, "{status}\n{}", agents[0].1.log());
    let listed: Vec<(&str, &str, u64)> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap(),
                n["health"].as_str().unwrap(),
                n["lag"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("nginx-1", "ok", 0),
            ("nginx-2", "ok", 0),
            ("nginx-3", "ok", 0),
            ("varnish-1", "ok", 0)
        ],
        "{status}"
    );

    for (name, agent) in agents {
        let log = agent.log();
        let (code, summary) = agent.terminate().await;
        assert_eq!(code, 0, "{name}: {log}");
        assert_eq!(summary["purged"], 1, "{name}: {summary}\n{log}");
        assert_eq!(summary["dead_lettered"], 0, "{name}: {summary}");
    }
    let (_, status) = fleet_status(&status_config).await;
    assert!(
        status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["health"] == "stopped"),
        "{status}"
    );
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The assertion helpers over nginx and Varnish alike.
trait Warmable: Sync {
    fn warm<'a>(&'a self, paths: &'a [&'a str]) -> futures::future::BoxFuture<'a, ()>;
    fn purged<'a>(
        &'a self,
        origin: &'a Origin,
        path: &'a str,
    ) -> futures::future::BoxFuture<'a, ()>;
    fn cached<'a>(&'a self, path: &'a str) -> futures::future::BoxFuture<'a, ()>;
}

impl<T: CacheServer> Warmable for T {
    fn warm<'a>(&'a self, paths: &'a [&'a str]) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(warm(self, paths))
    }
    fn purged<'a>(
        &'a self,
        origin: &'a Origin,
        path: &'a str,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(assert_purged(self, origin, path))
    }
    fn cached<'a>(&'a self, path: &'a str) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(assert_cached(self, path))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_during_saves_resumes_after_its_last_ack_and_its_node_ends_fresh() {
    // The issue's 500 saves, each its own message (max_batch = 1).
    const PAGES: usize = 500;
    let origin = Origin::start().unwrap();
    let (fleet, steady, killed) = tokio::join!(
        Fleet::start(Duration::from_secs(3600)),
        Nginx::start(&origin, NginxConfig::default()),
        Nginx::start(&origin, NginxConfig::default()),
    );
    let (steady, killed) = (steady.unwrap(), killed.unwrap());
    let steady_config = fleet.node_settings("steady", &nginx_files_backend(&steady));
    let killed_config = fleet.node_settings("killed", &nginx_files_backend(&killed));
    let steady_agent = AgentProcess::start(&steady_config, fleet.dir.path(), "steady");
    let mut first = Some(AgentProcess::start(
        &killed_config,
        fleet.dir.path(),
        "killed",
    ));
    fleet.wait_for_consumer("steady").await;
    fleet.wait_for_consumer("killed").await;
    let pages: Vec<String> = (0..PAGES).map(|i| format!("/pages/{i}")).collect();
    for page in &pages {
        warm(&steady, &[page.as_str()]).await;
        warm(&killed, &[page.as_str()]).await;
    }
    warm(&steady, &["/pages/neighbour"]).await;
    warm(&killed, &["/pages/neighbour"]).await;
    let start_sequence = fleet.last_sequence().await;

    let purger = fleet.publisher(1);
    for (i, page) in pages.iter().enumerate() {
        save(&purger, page).await;
        if i == PAGES / 3 {
            // Once it has purged some, kill it in the middle of the saves.
            let deadline = Instant::now() + Duration::from_secs(10);
            while fleet.consumer("killed").await.unwrap().0 < start_sequence + 20 {
                assert!(Instant::now() < deadline, "the agent purges nothing");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if let Some(agent) = first.take() {
                agent.kill().await;
            }
        }
    }
    purger.flush().await;
    let acked_before_restart = fleet.consumer("killed").await.unwrap().0;
    let last = fleet.last_sequence().await;
    assert!(
        acked_before_restart < last,
        "the killed agent had acked everything ({acked_before_restart} of {last}): nothing to resume"
    );
    let second = AgentProcess::start(&killed_config, fleet.dir.path(), "killed");
    fleet
        .wait_until_applied("steady", Duration::from_secs(20))
        .await;
    fleet
        .wait_until_applied("killed", Duration::from_secs(20))
        .await;

    for page in &pages {
        assert_purged(&steady, &origin, page).await;
        assert_purged(&killed, &origin, page).await;
    }
    assert_cached(&steady, "/pages/neighbour").await;
    assert_cached(&killed, "/pages/neighbour").await;

    // At least once: the killed node may have purged a message twice (one it purged but had
    // not acked when it was killed); the node that kept running saw every message once.
    let messages = last - start_sequence;
    let (_, steady_deliveries, _) = fleet.consumer("steady").await.unwrap();
    let (_, killed_deliveries, _) = fleet.consumer("killed").await.unwrap();
    assert_eq!(messages, PAGES as u64);
    eprintln!(
        "{messages} messages for {PAGES} saves; killed node: {} redeliveries (delivered to the killed agent but not acked: at most that many purged twice); steady node: {}",
        killed_deliveries - messages,
        steady_deliveries - messages
    );
    assert_eq!(
        steady_deliveries, messages,
        "the steady node saw a duplicate"
    );

    let (code, _) = steady_agent.terminate().await;
    assert_eq!(code, 0);
    let (code, summary) = second.terminate().await;
    assert_eq!(code, 0, "{summary}");
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The node's entry in `fleet status --json`.
async fn node_status(config: &Path, node: &str) -> Value {
    let (_, status) = fleet_status(config).await;
    status["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["node"] == node).cloned())
        .unwrap_or_else(|| panic!("{node} is not in {status}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_messages_are_dead_lettered_never_widened_and_the_agent_purges_on() {
    let origin = Origin::start().unwrap();
    let (fleet, nginx) = tokio::join!(
        Fleet::start(Duration::from_secs(3600)),
        Nginx::start(&origin, NginxConfig::default()),
    );
    let nginx = nginx.unwrap();
    let config = fleet.node_settings("edge", &nginx_files_backend(&nginx));
    let agent = AgentProcess::start(&config, fleet.dir.path(), "edge");
    fleet.wait_for_consumer("edge").await;
    warm(&nginx, &["/posts/a", "/posts/ab", "/other"]).await;

    let subject = format!("{}.all", fleet.settings.subject_prefix);
    let hostile: [&[u8]; 5] = [
        b"not json",
        br#"{"v": 2, "targets": ["url /posts/a"], "sent_at_ms": 0}"#,
        br#"{"v": 1, "targets": ["everythin"], "sent_at_ms": 0}"#,
        br#"{"v": 1, "targets": ["url /posts/a"], "sent_at_ms": 0, "all": true}"#,
        br#"{"v": 1, "targets": [], "sent_at_ms": 0}"#,
    ];
    for payload in hostile {
        fleet
            .js
            .publish(subject.clone(), payload.to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let purger = fleet.publisher(500);
    save(&purger, "/posts/a").await;
    purger.flush().await;
    fleet
        .wait_until_applied("edge", Duration::from_secs(10))
        .await;

    // The valid purge went through; nothing was widened: the neighbours are still cached.
    assert_purged(&nginx, &origin, "/posts/a").await;
    assert_cached(&nginx, "/posts/ab").await;
    assert_cached(&nginx, "/other").await;

    // Each hostile message is in the dead-letter stream, with the reason.
    let dead = fleet
        .js
        .get_stream(format!("{}_DEAD", fleet.settings.stream))
        .await
        .unwrap();
    let mut reasons = Vec::new();
    for sequence in 1..=5 {
        let message = dead.get_raw_message(sequence).await.unwrap();
        let reason = message
            .headers
            .get("Cache-Purge-Reason")
            .map(|v| v.to_string())
            .unwrap_or_default();
        reasons.push(reason);
    }
    for (reason, expected) in reasons.iter().zip([
        "not a purge message",
        "version 2",
        "invalid target",
        "unknown field",
        "no targets",
    ]) {
        assert!(reason.contains(expected), "{reasons:?}");
    }
    // The node's state says so within a heartbeat (200ms here).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = node_status(&config, "edge").await;
        if state["dead_lettered"] == 5 && state["purged"] == 1 {
            assert_eq!(state["health"], "ok", "{state}");
            assert!(
                state["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("dead-lettered"),
                "{state}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{state}\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, summary) = agent.terminate().await;
    assert_eq!((code, &summary["dead_lettered"]), (0, &Value::from(5)));
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_failing_on_a_node_is_redelivered_with_backoff_until_the_cache_is_back() {
    let origin = Origin::start().unwrap();
    let (fleet, nginx) = tokio::join!(
        Fleet::start(Duration::from_secs(3600)),
        Nginx::start(&origin, NginxConfig::default()),
    );
    let mut nginx = nginx.unwrap();
    // HTTP mode (ngx_cache_purge), so that a stopped nginx fails the purge.
    let backend = format!(
        "[backends.cache]\nkind = \"nginx\"\nservers = [\"{}\"]\npurge_prefix = \"/purge\"\ntimeout = \"1s\"\n",
        nginx.addr()
    );
    let config = fleet.node_settings(
        "edge",
        &format!("{backend}\n[retry]\ninitial_backoff = \"100ms\"\nmax_backoff = \"500ms\"\nmax_attempts = 100\n"),
    );
    let agent = AgentProcess::start(&config, fleet.dir.path(), "edge");
    fleet.wait_for_consumer("edge").await;
    warm(&nginx, &["/posts/a", "/posts/ab"]).await;

    nginx.kill_server().unwrap();
    let purger = fleet.publisher(500);
    save(&purger, "/posts/a").await;
    purger.flush().await;
    // The node says it is failing, and the message is not acked.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = node_status(&config, "edge").await;
        if state["health"] == "failing" {
            assert!(
                state["last_error"].as_str().unwrap().contains("cache"),
                "{state}"
            );
            assert_eq!(state["lag"], 1, "{state}");
            break;
        }
        assert!(Instant::now() < deadline, "never failing: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = fleet_status(&config).await;
    assert_eq!(code, 1, "a failing node fails `fleet status`");

    nginx.restart().unwrap();
    fleet
        .wait_until_applied("edge", Duration::from_secs(10))
        .await;
    assert_purged(&nginx, &origin, "/posts/a").await;
    assert_cached(&nginx, "/posts/ab").await;
    let (_, deliveries, _) = fleet.consumer("edge").await.unwrap();
    assert!(
        deliveries > 1,
        "it was redelivered ({deliveries} deliveries)"
    );
    let (code, summary) = agent.terminate().await;
    assert_eq!(code, 0);
    assert!(summary["retried"].as_u64().unwrap() >= 1, "{summary}");
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_for_a_group_or_a_routed_host_reaches_only_the_nodes_of_that_group() {
    let origin = Origin::start().unwrap();
    let (fleet, blog, shop) = tokio::join!(
        Fleet::start(Duration::from_secs(3600)),
        Nginx::start(&origin, NginxConfig::default()),
        Nginx::start(&origin, NginxConfig::default()),
    );
    let (blog, shop) = (blog.unwrap(), shop.unwrap());
    let blog_config = fleet.node_settings_with(
        "blog-node",
        &nginx_files_backend(&blog),
        "groups = [\"all\", \"blog\"]\n",
    );
    let shop_config = fleet.node_settings("shop-node", &nginx_files_backend(&shop));
    let blog_agent = AgentProcess::start(&blog_config, fleet.dir.path(), "blog-node");
    let shop_agent = AgentProcess::start(&shop_config, fleet.dir.path(), "shop-node");
    fleet.wait_for_consumer("blog-node").await;
    fleet.wait_for_consumer("shop-node").await;
    for cache in [&blog, &shop] {
        warm(cache, &["/blog/post", "/blog/other", "/home"]).await;
    }

    // The app routes the blog's host to group `blog`; everything else goes to `all`.
    let mut settings = fleet.settings.clone();
    settings
        .host_groups
        .insert("blog.example".parse().unwrap(), "blog".parse().unwrap());
    let app = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("fleet", NatsBackend::new(&settings).unwrap())
        .build()
        .unwrap();
    save(&app, "http://blog.example/blog/post").await;
    save(&app, "/home").await;
    app.flush().await;
    // And a backend whose group is `blog` sends everything there.
    let to_blog = fleet.group_publisher("blog", 500);
    save(&to_blog, "/blog/other").await;
    to_blog.flush().await;
    fleet
        .wait_until_applied("blog-node", Duration::from_secs(10))
        .await;
    fleet
        .wait_until_applied("shop-node", Duration::from_secs(10))
        .await;

    assert_purged(&blog, &origin, "/blog/post").await;
    assert_cached(&shop, "/blog/post").await;
    assert_purged(&blog, &origin, "/blog/other").await;
    assert_cached(&shop, "/blog/other").await;
    assert_purged(&blog, &origin, "/home").await;
    assert_purged(&shop, &origin, "/home").await;
    let (_, blog_summary) = blog_agent.terminate().await;
    let (_, shop_summary) = shop_agent.terminate().await;
    assert!(
        blog_summary["purged"].as_u64().unwrap() >= 2,
        "{blog_summary}"
    );
    assert_eq!(shop_summary["purged"], 1, "{shop_summary}");
    to_blog.shutdown(Duration::from_secs(5)).await.unwrap();
    app.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_away_longer_than_the_stream_keeps_purges_everything_when_it_is_back() {
    away_too_long_is_made_good("").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_away_too_long_purges_everything_on_a_backend_that_serves_only_some_hosts() {
    // Routing sends "everything" where paths go, and this backend takes no paths (the other
    // one does): the catch-up must reach it all the same.
    away_too_long_is_made_good(
        "hosts = [\"www.example.com\"]\n[backends.default]\nkind = \"dummy\"\npaths = true\n",
    )
    .await;
}

/// A node away longer than the stream keeps purges (max_age 1 s) purges everything when it is
/// back, on its nginx backend, whose table ends with `route` (its `hosts` and `paths`, and
/// other backends).
async fn away_too_long_is_made_good(route: &str) {
    let origin = Origin::start().unwrap();
    let (fleet, nginx) = tokio::join!(
        Fleet::start(Duration::from_secs(1)),
        Nginx::start(&origin, NginxConfig::default()),
    );
    let nginx = nginx.unwrap();
    let config = fleet.node_settings("edge", &format!("{}{route}", nginx_files_backend(&nginx)));
    let agent = AgentProcess::start(&config, fleet.dir.path(), "edge");
    fleet.wait_for_consumer("edge").await;
    let purger = fleet.publisher(500);
    save(&purger, "/warm-up").await;
    purger.flush().await;
    fleet
        .wait_until_applied("edge", Duration::from_secs(10))
        .await;
    let (code, _) = agent.terminate().await;
    assert_eq!(code, 0);

    // While the node is away, a purge is published and dropped by the stream (max_age 1s).
    warm(&nginx, &["/posts/a", "/posts/ab"]).await;
    save(&purger, "/posts/a").await;
    purger.flush().await;
    let stream = fleet
        .js
        .get_stream(fleet.settings.stream.as_str())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while stream.get_info().await.unwrap().state.messages > 0 {
        assert!(
            Instant::now() < deadline,
            "the stream never dropped the purge"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let agent = AgentProcess::start(&config, fleet.dir.path(), "edge");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state = node_status(&config, "edge").await;
        if state["purged_everything_at_ms"].is_u64() && state["status"] == "running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never purged everything: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The missed purge is made good, at the price of the whole cache: the neighbour too.
    assert_purged(&nginx, &origin, "/posts/a").await;
    assert_purged(&nginx, &origin, "/posts/ab").await;
    let (code, summary) = agent.terminate().await;
    assert_eq!(code, 0);
    assert_eq!(summary["purged_everything"], true, "{summary}");
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// `cache-purge ARGS --config CONFIG`: the exit code and stderr.
async fn cache_purge(config: &Path, args: &[&str]) -> (i32, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_cache-purge"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("CACHE_PURGE_CONFIG")
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nats_server_restarted_mid_stream_in_outbox_mode_loses_nothing() {
    use cache_purge_hooks_sea_orm::outbox;
    let origin = Origin::start().unwrap();
    let (mut fleet, nginx) = tokio::join!(
        Fleet::start(Duration::from_secs(3600)),
        Nginx::start(&origin, NginxConfig::default()),
    );
    assert!(
        !fleet.nats.is_shared(),
        "this test restarts its own nats-server"
    );
    let nginx = nginx.unwrap();
    let node_config = fleet.node_settings("edge", &nginx_files_backend(&nginx));
    let agent = AgentProcess::start(&node_config, fleet.dir.path(), "edge");
    fleet.wait_for_consumer("edge").await;
    let pages: Vec<String> = (0..10).map(|i| format!("/posts/{i}")).collect();
    for page in &pages {
        warm(&nginx, &[page.as_str()]).await;
    }
    warm(&nginx, &["/posts/neighbour"]).await;

    // The app's side: outbox rows for the nats backend, as saves in outbox mode leave them.
    let app_config = fleet.dir.path().join("app.toml");
    std::fs::write(
        &app_config,
        format!(
            "delivery = \"outbox\"\n[retry]\ninitial_backoff = \"100ms\"\nmax_backoff = \"500ms\"\nmax_attempts = 1000\n\
             [backends.fleet]\nkind = \"nats\"\nservers = [\"{}\"]\nstream = \"{}\"\nsubject_prefix = \"{}\"\nmax_age = \"1h\"\ntimeout = \"1s\"\n",
            fleet.nats.addr(),
            fleet.settings.stream,
            fleet.settings.subject_prefix
        ),
    )
    .unwrap();
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        fleet.dir.path().join("app.db").display()
    );
    let db = sea_orm::Database::connect(&db_url).await.unwrap();
    outbox::create_table(&db).await.unwrap();
    let enqueue = |pages: &[String]| {
        let targets: Vec<Target> = pages.iter().map(|p| Target::url(p).unwrap()).collect();
        let db = &db;
        async move {
            for target in targets {
                outbox::enqueue(db, &["fleet"], &[target], outbox::now_ms())
                    .await
                    .unwrap();
            }
        }
    };
    enqueue(&pages[..5]).await;
    let (code, out) = cache_purge(
        &app_config,
        &[
            "outbox",
            "drain",
            "--timeout",
            "10s",
            "--database-url",
            &db_url,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = cache_purge(
        &app_config,
        &["outbox", "status", "--json", "--database-url", &db_url],
    )
    .await;
    assert!(code == 0 && out.contains("\"dead\": 0"), "{out}");

    // NATS goes down mid-stream: the rows stay, since no publish is acked.
    fleet.nats.kill_server().unwrap();
    enqueue(&pages[5..]).await;
    let (code, out) = cache_purge(
        &app_config,
        &[
            "outbox",
            "drain",
            "--timeout",
            "2s",
            "--database-url",
            &db_url,
        ],
    )
    .await;
    assert_eq!(
        code, 1,
        "the rows cannot be delivered while NATS is down: {out}"
    );

    // Back (same store): the rows go out, the agent reconnects and purges every page.
    fleet.nats.restart().unwrap();
    let (code, out) = cache_purge(
        &app_config,
        &[
            "outbox",
            "drain",
            "--timeout",
            "20s",
            "--database-url",
            &db_url,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    fleet
        .wait_until_applied("edge", Duration::from_secs(20))
        .await;
    // (The outbox worker batches rows: fewer messages than rows.)
    let messages = fleet.last_sequence().await;
    assert!(messages >= 2);
    for page in &pages {
        assert_purged(&nginx, &origin, page).await;
    }
    assert_cached(&nginx, "/posts/neighbour").await;
    let (code, summary) = agent.terminate().await;
    assert_eq!(code, 0);
    assert!(summary["purged"].as_u64().unwrap() >= messages, "{summary}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_node_starts_from_now_from_the_first_purge_kept_or_from_a_time() {
    let origin = Origin::start().unwrap();
    let (fleet, first, now, since) = tokio::join!(
        Fleet::start(Duration::from_secs(3600)),
        Nginx::start(&origin, NginxConfig::default()),
        Nginx::start(&origin, NginxConfig::default()),
        Nginx::start(&origin, NginxConfig::default()),
    );
    let (first, now, since) = (first.unwrap(), now.unwrap(), since.unwrap());
    for cache in [&first, &now, &since] {
        warm(cache, &["/a", "/b", "/c"]).await;
    }
    // Two purges before any node exists, with a moment between them.
    let purger = fleet.publisher(500);
    save(&purger, "/a").await;
    purger.flush().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    tokio::time::sleep(Duration::from_millis(50)).await;
    save(&purger, "/b").await;
    purger.flush().await;

    let configs = [
        (
            "first",
            fleet.node_settings_with("first", &nginx_files_backend(&first), "start = \"first\"\n"),
        ),
        (
            "now",
            fleet.node_settings_with("now", &nginx_files_backend(&now), "start = \"now\"\n"),
        ),
        (
            "since",
            fleet.node_settings_with(
                "since",
                &nginx_files_backend(&since),
                &format!("start = \"{between}\"\n"),
            ),
        ),
    ];
    let mut agents = Vec::new();
    for (name, config) in &configs {
        agents.push(AgentProcess::start(config, fleet.dir.path(), name));
    }
    for (name, _) in &configs {
        fleet.wait_for_consumer(name).await;
    }
    save(&purger, "/c").await;
    purger.flush().await;
    for (name, _) in &configs {
        fleet
            .wait_until_applied(name, Duration::from_secs(10))
            .await;
    }

    for path in ["/a", "/b", "/c"] {
        assert_purged(&first, &origin, path).await;
    }
    assert_cached(&now, "/a").await;
    assert_cached(&now, "/b").await;
    assert_purged(&now, &origin, "/c").await;
    assert_cached(&since, "/a").await;
    assert_purged(&since, &origin, "/b").await;
    assert_purged(&since, &origin, "/c").await;
    for agent in agents {
        let (code, _) = agent.terminate().await;
        assert_eq!(code, 0);
    }
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn check_finds_the_nats_servers_and_a_stream_with_other_settings() {
    let fleet = Fleet::start(Duration::from_secs(3600)).await;
    let app = |max_age: &str| {
        let path = fleet.dir.path().join(format!("app-{max_age}.toml"));
        std::fs::write(
            &path,
            format!(
                "[backends.fleet]\nkind = \"nats\"\nservers = [\"{}\"]\nstream = \"{}\"\nsubject_prefix = \"{}\"\nmax_age = \"{max_age}\"\n",
                fleet.nats.addr(),
                fleet.settings.stream,
                fleet.settings.subject_prefix
            ),
        )
        .unwrap();
        path
    };
    let (code, out) = cache_purge(&app("1h"), &["check"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("connected") && out.contains("exists as configured"),
        "{out}"
    );
    let (code, out) = cache_purge(&app("2h"), &["check"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("max_age 1h, not 2h"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_failing_on_every_delivery_is_dead_lettered_after_max_attempts() {
    let origin = Origin::start().unwrap();
    let (fleet, nginx) = tokio::join!(
        Fleet::start(Duration::from_secs(3600)),
        Nginx::start(&origin, NginxConfig::default()),
    );
    let mut nginx = nginx.unwrap();
    let backend = format!(
        "[backends.cache]\nkind = \"nginx\"\nservers = [\"{}\"]\npurge_prefix = \"/purge\"\ntimeout = \"1s\"\n\
         [retry]\ninitial_backoff = \"50ms\"\nmax_backoff = \"100ms\"\nmax_attempts = 3\n",
        nginx.addr()
    );
    let config = fleet.node_settings("edge", &backend);
    let agent = AgentProcess::start(&config, fleet.dir.path(), "edge");
    fleet.wait_for_consumer("edge").await;
    nginx.kill_server().unwrap();
    let purger = fleet.publisher(500);
    save(&purger, "/posts/a").await;
    purger.flush().await;
    fleet
        .wait_until_applied("edge", Duration::from_secs(15))
        .await;

    let (_, deliveries, _) = fleet.consumer("edge").await.unwrap();
    assert_eq!(deliveries, 3, "delivered max_attempts times, then given up");
    let dead = fleet
        .js
        .get_stream(format!("{}_DEAD", fleet.settings.stream))
        .await
        .unwrap();
    let message = dead.get_raw_message(1).await.unwrap();
    let reason = message
        .headers
        .get("Cache-Purge-Reason")
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert!(reason.contains("backend `cache`"), "{reason}");
    let (code, summary) = agent.terminate().await;
    assert_eq!(code, 0);
    assert_eq!(summary["dead_lettered"], 1, "{summary}");
    assert_eq!(summary["retried"], 2, "{summary}");
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_refuses_a_nats_backend_and_a_missing_node_name() {
    let fleet = Fleet::start(Duration::from_secs(3600)).await;
    let config = fleet.dir.path().join("loop.toml");
    std::fs::write(
        &config,
        "[backends.fleet]\nkind = \"nats\"\n[agent]\nnode = \"edge\"\n",
    )
    .unwrap();
    let (code, out) = cache_purge(&config, &["agent"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("backend `fleet` is kind = \"nats\""), "{out}");
    let config = fleet.dir.path().join("nameless.toml");
    std::fs::write(&config, "[backends.cache]\nkind = \"dummy\"\n").unwrap();
    let (code, out) = cache_purge(&config, &["agent"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("set agent.node (or pass --node)"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_with_a_token_from_the_environment_an_agent_purges_its_node_and_status_reads_it() {
    let origin = Origin::start().unwrap();
    let (fleet, nginx) = tokio::join!(
        Fleet::start_with(
            Duration::from_secs(3600),
            NatsConfig::token("fleet-t0ken").with_tls()
        ),
        Nginx::start(&origin, NginxConfig::default()),
    );
    let nginx = nginx.unwrap();
    let env = [("CACHE_PURGE__AGENT__AUTH__TOKEN", "fleet-t0ken")];
    let config = fleet.node_settings("edge-tls", &nginx_files_backend(&nginx));
    assert!(
        !std::fs::read_to_string(&config)
            .unwrap()
            .contains("fleet-t0ken")
    );
    let agent = AgentProcess::start_with_env(&config, fleet.dir.path(), "edge-tls", &env);
    fleet.wait_for_consumer("edge-tls").await;
    warm(&nginx, &["/posts/a", "/posts/ab"]).await;

    let purger = fleet.publisher(500);
    save(&purger, "/posts/a").await;
    purger.flush().await;
    fleet
        .wait_until_applied("edge-tls", Duration::from_secs(10))
        .await;
    assert_purged(&nginx, &origin, "/posts/a").await;
    assert_cached(&nginx, "/posts/ab").await;

    let status_config = fleet.node_settings("status", "");
    let (code, status) = fleet_status_with_env(&status_config, &env).await;
    assert_eq!(code, 0, "{status}\n{}", agent.log());
    let node = &status["nodes"][0];
    assert_eq!(node["node"], "edge-tls", "{status}");
    assert_eq!(node["health"], "ok", "{status}");

    // Without the token, status is refused, and says what to set.
    let (code, refused) = fleet_status(&status_config).await;
    assert_ne!(code, 0, "{refused}");
    assert!(refused.to_string().contains("`auth` table"), "{refused}");

    let (code, summary) = agent.terminate().await;
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["purged"], 1, "{summary}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_deleted_under_a_running_agent_is_created_again_and_a_retired_node_is_forgotten()
{
    let origin = Origin::start().unwrap();
    let (fleet, nginx) = tokio::join!(
        Fleet::start(Duration::from_secs(3600)),
        Nginx::start(&origin, NginxConfig::default()),
    );
    let nginx = nginx.unwrap();
    let config = fleet.node_settings("edge-1", &nginx_files_backend(&nginx));
    let agent = AgentProcess::start(&config, fleet.dir.path(), "edge-1");
    fleet.wait_for_consumer("edge-1").await;
    warm(&nginx, &["/posts/a", "/posts/b", "/posts/c"]).await;
    let purger = fleet.publisher(500);
    save(&purger, "/posts/a").await;
    purger.flush().await;
    fleet
        .wait_until_applied("edge-1", Duration::from_secs(10))
        .await;
    assert_purged(&nginx, &origin, "/posts/a").await;

    let stream = fleet
        .js
        .get_stream(fleet.settings.stream.as_str())
        .await
        .unwrap();
    stream
        .delete_consumer("cache-purge-agent-edge-1")
        .await
        .unwrap();
    save(&purger, "/posts/b").await;
    purger.flush().await;
    fleet.wait_for_consumer("edge-1").await;
    fleet
        .wait_until_applied("edge-1", Duration::from_secs(10))
        .await;
    assert_purged(&nginx, &origin, "/posts/b").await;
    assert_cached(&nginx, "/posts/c").await;

    // A running node is not forgotten without --force.
    let status_config = fleet.node_settings("status", "");
    let (code, text) = cache_purge(&status_config, &["fleet", "forget", "edge-1"]).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("its agent still runs") && text.contains("--force"),
        "{text}"
    );

    let (code, summary) = agent.terminate().await;
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["purged"], 2, "{summary}");

    // Retired: forgotten, its consumer and its state gone, no longer listed.
    let (code, text) = cache_purge(&status_config, &["fleet", "forget", "edge-1"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("consumer `cache-purge-agent-edge-1` deleted, state removed"),
        "{text}"
    );
    assert!(fleet.consumer("edge-1").await.is_none());
    let (code, status) = fleet_status(&status_config).await;
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["nodes"], serde_json::json!([]), "{status}");
    let (code, text) = cache_purge(&status_config, &["fleet", "forget", "edge-1"]).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no node `edge-1`"), "{text}");
}
