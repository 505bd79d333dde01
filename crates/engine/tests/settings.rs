//! Settings files and environment overrides: what loads, and the error for what does not.

use std::io::Write;

use cache_purge_hooks_engine::settings::{BackendSettings, NginxMode, SettingsLoader, VarnishMode};
use cache_purge_hooks_engine::{Delivery, Purger, Settings};

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn error(text: &str) -> String {
    let f = file(text);
    let err = SettingsLoader::default()
        .file(f.path())
        .without_env()
        .load()
        .unwrap_err();
    let path = f.path().display().to_string();
    let msg = err.to_string();
    assert!(msg.contains(&path), "error does not name the file: {msg}");
    msg.replace(&path, "FILE")
}

#[test]
fn a_missing_default_file_means_the_log_backend() {
    let dir = tempfile::tempdir().unwrap();
    let s = SettingsLoader::default()
        .toml("")
        .env_vars(Vec::<(String, String)>::new())
        .load()
        .unwrap();
    assert_eq!(s, Settings::default());
    assert!(matches!(s.backends["log"], BackendSettings::Log(_)));
    // An explicitly named file must exist.
    let err = SettingsLoader::default()
        .file(dir.path().join("nope.toml"))
        .without_env()
        .load()
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(err.to_string().contains("nope.toml"), "{err}");
}

#[test]
fn a_file_selects_several_backends() {
    let f = file(
        r#"
        delivery = "immediate"
        [backends.edge]
        kind = "varnish"
        servers = ["127.0.0.1:6082", "127.0.0.2:6082"]
        secret_file = "/run/varnish/secret"
        [backends.local]
        kind = "nginx"
        mode = "wipe"
        cache_dir = "/var/cache/nginx"
        [backends.record]
        kind = "memory"
        "#,
    );
    let s = Settings::from_file(f.path()).unwrap();
    assert_eq!(s.delivery, Delivery::Immediate);
    assert_eq!(s.backends.len(), 3);
    let BackendSettings::Varnish(v) = &s.backends["edge"] else {
        panic!()
    };
    assert_eq!(v.mode, VarnishMode::Cli);
    assert_eq!(
        v.servers,
        [
            "127.0.0.1:6082".parse().unwrap(),
            "127.0.0.2:6082".parse().unwrap()
        ]
    );
    let BackendSettings::Nginx(n) = &s.backends["local"] else {
        panic!()
    };
    assert_eq!(n.mode, NginxMode::Wipe);
}

#[test]
fn environment_variables_override_the_file_and_are_named_in_errors() {
    let f = file("[backends.record]\nkind = \"memory\"\n");
    let s = SettingsLoader::default()
        .file(f.path())
        .env_vars([
            ("CACHE_PURGE__DELIVERY", "immediate"),
            ("CACHE_PURGE__BACKENDS__RECORD__MAX_BATCH", "7"),
        ])
        .load()
        .unwrap();
    assert_eq!(s.delivery, Delivery::Immediate);
    let BackendSettings::Memory(m) = &s.backends["record"] else {
        panic!()
    };
    assert_eq!(m.max_batch.get(), 7);

    let err = SettingsLoader::default()
        .file(f.path())
        .env_vars([("CACHE_PURGE__BACKENDS__RECORD__MAX_BATCH", "lots")])
        .load()
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("backends.record.max_batch"));
    assert_eq!(
        err.origin.as_deref(),
        Some("environment variable CACHE_PURGE__BACKENDS__RECORD__MAX_BATCH")
    );
}

#[test]
fn every_kind_of_invalid_setting_names_key_file_and_expectation() {
    let cases = [
        (
            "[backends.edge]\nkind = \"varnsh\"\n",
            "invalid cache purge setting `backends.edge.kind` (from FILE): unknown backend kind `varnsh`; expected one of `log`, `dummy`, `memory`, `varnish`, `nginx`",
        ),
        (
            "[backends.edge]\nservers = \"a:1\"\n",
            "invalid cache purge setting `backends.edge.kind` (from FILE): missing `kind`; expected one of `log`, `dummy`, `memory`, `varnish`, `nginx`",
        ),
        (
            "[backends.edge]\nkind = \"varnish\"\nsecrett = \"/x\"\n",
            "invalid cache purge setting `backends.edge.secrett` (from FILE): unknown key `secrett`; expected one of `mode`, `servers`, `secret_file`, `site_domain`, `varnishadm_bin`, `ban_style`, `lurker_url_header`, `lurker_host_header`, `http_method`, `ban_header`, `ban_host_header`, `max_ban_length`, `timeout`, `concurrency`",
        ),
        (
            "delivery = \"later\"\n",
            "invalid cache purge setting `delivery` (from FILE): unknown delivery mode `later`; expected one of `immediate`, `after_commit`, `outbox`",
        ),
        (
            "[backends.n]\nkind = \"nginx\"\nconcurrency = \"many\"\n",
            "invalid cache purge setting `backends.n.concurrency` (from FILE): expected an integer, found string \"many\"",
        ),
        (
            "[backends.n]\nkind = \"nginx\"\ntimeout = \"soon\"\n",
            "invalid cache purge setting `backends.n.timeout` (from FILE): invalid value: string \"soon\", expected a duration like \"5s\" or \"250ms\"",
        ),
        (
            "[backends.n]\nkind = \"nginx\"\nmode = \"files\"\n",
            "invalid cache purge setting `backends.n.cache_dir` (from FILE): required with mode = \"files\" or \"wipe\": the proxy_cache_path directory",
        ),
        (
            "[backends.n]\nkind = \"nginx\"\nservers = [\"localhost\"]\n",
            "invalid cache purge setting `backends.n.servers[0]` (from FILE): `localhost` is not `host:port`",
        ),
        (
            "[backends.v]\nkind = \"varnish\"\nmode = \"ssh\"\n",
            "invalid cache purge setting `backends.v.mode` (from FILE): unknown varnish mode `ssh`; expected one of `cli`, `varnishadm`, `http`",
        ),
        (
            "[backends.n]\nkind = \"nginx\"\nlevels = \"3:3\"\n",
            "invalid cache purge setting `backends.n.levels` (from FILE): `3:3` is not an nginx levels value: up to three levels of 1 or 2, like `1:2`",
        ),
        (
            "[backends.l]\nkind = \"log\"\nlevel = \"debug\"\n",
            "invalid cache purge setting `backends.l.level` (from FILE): unknown key `level`; this backend has no options",
        ),
        (
            "speed = 3\n",
            "invalid cache purge setting `speed` (from FILE): unknown key `speed`; expected one of `delivery`, `shutdown_timeout`, `backends`, `retry`, `queue_capacity`, `when_full`",
        ),
        (
            "[backends]\n",
            "invalid cache purge setting `backends` (from FILE): no backend configured; add one (kind = \"dummy\" to purge nothing on purpose)",
        ),
        (
            "[backends.\"a b\"]\nkind = \"log\"\n",
            "invalid cache purge setting `backends.a b` (from FILE): a backend name may only hold letters, digits, `-` and `_`",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error(text), want, "for {text:?}");
    }
    assert!(error("x = [").starts_with("invalid cache purge setting (from FILE): not valid TOML"));
}

#[tokio::test]
async fn building_a_purger_from_settings() {
    let s = Settings::from_toml_str("[backends.a]\nkind = \"memory\"\n[backends.b]\nkind = \"dummy\"\n[backends.c]\nkind = \"log\"\n").unwrap();
    let purger = Purger::from_settings(&s).unwrap();
    assert_eq!(purger.backend_names(), ["a", "b", "c"]);
    assert!(purger.memory_backend("a").is_some());

    // What cannot work is refused at start-up, not at the first save: a missing secret
    // file, a missing varnishadm binary.
    let s = Settings::from_toml_str(
        "[backends.edge]\nkind = \"varnish\"\nsecret_file = \"/nonexistent/secret\"\n",
    )
    .unwrap();
    let err = Purger::from_settings(&s).unwrap_err().to_string();
    assert!(
        err.starts_with("backend `edge`: cannot read secret_file `/nonexistent/secret`: No such file or directory"),
        "{err}"
    );
    let s = Settings::from_toml_str(
        "[backends.edge]\nkind = \"varnish\"\nmode = \"varnishadm\"\nsecret_file = \"Cargo.toml\"\nvarnishadm_bin = \"/nonexistent/varnishadm\"\n",
    )
    .unwrap();
    let err = Purger::from_settings(&s).unwrap_err().to_string();
    assert!(
        err.starts_with("backend `edge`: varnishadm_bin `/nonexistent/varnishadm`: No such file"),
        "{err}"
    );
}

#[test]
fn nginx_key_templates_are_checked_at_load() {
    let error = |toml: &str| Settings::from_toml_str(toml).unwrap_err().to_string();
    let files = "[backends.n]\nkind = \"nginx\"\nmode = \"files\"\ncache_dir = \"/tmp/c\"\n";
    assert_eq!(
        error(&format!("{files}key_template = \"$uri$foo\"\n")),
        "invalid cache purge setting `backends.n.key_template` (from settings text): unknown variable `$foo` in `$uri$foo`; understood: $scheme, $proxy_host, $host, $http_host, $request_uri, $uri, $is_args, $args, $query_string"
    );
    assert_eq!(
        error(&format!("{files}key_template = \"$host\"\n")),
        "invalid cache purge setting `backends.n.key_template` (from settings text): `$host` uses neither $request_uri nor $uri: every URL would share one key"
    );
    // No guessed default: a wrong key would silently purge nothing.
    assert_eq!(
        error(files),
        "invalid cache purge setting `backends.n.key_template` (from settings text): required with mode = \"files\": your proxy_cache_key, verbatim (without one, nginx uses \"http://$proxy_host$request_uri\" for proxy_pass http://...)"
    );
    let keyed = format!("{files}key_template = \"http://$proxy_host$request_uri\"\n");
    assert_eq!(
        error(&keyed),
        "invalid cache purge setting `backends.n.proxy_host` (from settings text): required because key_template `http://$proxy_host$request_uri` uses $proxy_host: the host of your proxy_pass (like `origin`)"
    );
    assert!(Settings::from_toml_str(&format!("{keyed}proxy_host = \"origin\"\n")).is_ok());
    assert_eq!(
        error("[backends.v]\nkind = \"varnish\"\nconcurrency = 0\n"),
        "invalid cache purge setting `backends.v.concurrency` (from settings text): expected at least 1"
    );
}

#[test]
fn a_purger_needs_a_tokio_runtime() {
    let err = Purger::builder().build().unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
