//! Settings files and environment overrides: what loads, and the error for what does not.

use std::io::Write;

use cache_purge_hooks_engine::settings::{
    AkamaiAction, AkamaiNetwork, BackendSettings, NginxMode, SettingsLoader, VarnishMode,
};
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
    assert!(matches!(
        s.backends["log"].settings,
        BackendSettings::Log(_)
    ));
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
    let BackendSettings::Varnish(v) = &s.backends["edge"].settings else {
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
    let BackendSettings::Nginx(n) = &s.backends["local"].settings else {
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
    let BackendSettings::Memory(m) = &s.backends["record"].settings else {
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
            "invalid cache purge setting `backends.edge.kind` (from FILE): unknown backend kind `varnsh`; expected one of `log`, `dummy`, `memory`, `varnish`, `nginx`, `cloudflare`, `fastly`, `cloudfront`, `akamai`, `nats`",
        ),
        (
            "[backends.edge]\nservers = \"a:1\"\n",
            "invalid cache purge setting `backends.edge.kind` (from FILE): missing `kind`; expected one of `log`, `dummy`, `memory`, `varnish`, `nginx`, `cloudflare`, `fastly`, `cloudfront`, `akamai`, `nats`",
        ),
        (
            "[backends.edge]\nkind = \"varnish\"\nsecrett = \"/x\"\n",
            "invalid cache purge setting `backends.edge.secrett` (from FILE): unknown key `secrett`; expected one of `mode`, `servers`, `secret_file`, `site_domain`, `varnishadm_bin`, `ban_style`, `lurker_url_header`, `lurker_host_header`, `http_method`, `ban_header`, `ban_host_header`, `max_ban_length`, `timeout`, `concurrency`, `pipeline`, `tags`, `tag_header`, `ban_tags_header`, `xkey_header`, `soft_purge`, `hosts`, `paths`, `verify`, `verify_url`, `verify_header`, `verify_hit`, `verify_concurrency`, `refresh`, `refresh_rate`",
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
            "[backends.v]\nkind = \"varnish\"\npipeline = 0\n",
            "invalid cache purge setting `backends.v.pipeline` (from FILE): expected 1 to 64 requests written at once on one connection, got 0",
        ),
        (
            "[backends.n]\nkind = \"nginx\"\npipeline = 65\n",
            "invalid cache purge setting `backends.n.pipeline` (from FILE): expected 1 to 64 requests written at once on one connection, got 65",
        ),
        (
            "[backends.n]\nkind = \"nginx\"\nlevels = \"3:3\"\n",
            "invalid cache purge setting `backends.n.levels` (from FILE): `3:3` is not an nginx levels value: up to three levels of 1 or 2, like `1:2`",
        ),
        (
            "[backends.f]\nkind = \"nats\"\ngroup = \"blog.example\"\n",
            "invalid cache purge setting `backends.f.group` (from FILE): `blog.example` is not a group name: ASCII letters, digits, `-` or `_` (one subject token)",
        ),
        (
            "[backends.f]\nkind = \"nats\"\nretention = \"workqueue\"\n",
            "invalid cache purge setting `backends.f.retention` (from FILE): unknown stream retention `workqueue`; expected one of `limits`, `interest`",
        ),
        (
            "[backends.f]\nkind = \"nats\"\nreplicas = 7\n",
            "invalid cache purge setting `backends.f.replicas` (from FILE): expected 1 to 5 (JetStream's limit), got 7",
        ),
        (
            "[backends.l]\nkind = \"log\"\nlevel = \"debug\"\n",
            "invalid cache purge setting `backends.l.level` (from FILE): unknown key `level`; this backend has no options of its own; expected one of `hosts`, `paths`, `verify`, `verify_url`, `verify_header`, `verify_hit`, `verify_concurrency`, `refresh`, `refresh_rate`",
        ),
        (
            "speed = 3\n",
            "invalid cache purge setting `speed` (from FILE): unknown key `speed`; expected one of `delivery`, `shutdown_timeout`, `backends`, `retry`, `queue_capacity`, `when_full`, `spill_dir`, `repurge_after`, `tag_index`, `agent`",
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

#[test]
fn an_override_of_a_capitalised_backend_reaches_it_and_names_its_variable() {
    let f = file("[backends.Edge]\nkind = \"varnish\"\nservers = [\"127.0.0.1:6082\"]\n");
    let s = SettingsLoader::default()
        .file(f.path())
        .env_vars([(
            "CACHE_PURGE__BACKENDS__EDGE__SERVERS",
            "10.0.0.1:6082,10.0.0.2:6082",
        )])
        .load()
        .unwrap();
    // The override lands on `Edge`, not on a lower-cased twin `edge`.
    assert_eq!(s.backends.keys().collect::<Vec<_>>(), ["Edge"]);
    let BackendSettings::Varnish(v) = &s.backends["Edge"].settings else {
        panic!()
    };
    let servers: Vec<String> = v.servers.iter().map(ToString::to_string).collect();
    assert_eq!(servers, ["10.0.0.1:6082", "10.0.0.2:6082"]);

    let err = SettingsLoader::default()
        .file(f.path())
        .env_vars([(
            "CACHE_PURGE__BACKENDS__EDGE__SERVERS",
            "10.0.0.1:6082,nohost",
        )])
        .load()
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("backends.Edge.servers"));
    assert_eq!(
        err.origin.as_deref(),
        Some("environment variable CACHE_PURGE__BACKENDS__EDGE__SERVERS")
    );
    assert_eq!(err.message, "`nohost` is not `host:port`");
    // A key of the file next to it still names the file.
    let err = SettingsLoader::default()
        .file(f.path())
        .env_vars([("CACHE_PURGE__BACKENDS__EDGE__MODE", "http")])
        .load()
        .unwrap();
    let BackendSettings::Varnish(v) = &err.backends["Edge"].settings else {
        panic!()
    };
    assert_eq!(v.mode, VarnishMode::Http);
    let err = SettingsLoader::default()
        .file(f.path())
        .env_vars([("CACHE_PURGE__BACKENDS__EDGE__TIMEOUT", "soon")])
        .load()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid cache purge setting `backends.Edge.timeout` (from environment variable CACHE_PURGE__BACKENDS__EDGE__TIMEOUT): invalid value: string \"soon\", expected a duration like \"5s\" or \"250ms\""
    );
    let err = SettingsLoader::default()
        .file(f.path())
        .env_vars([("CACHE_PURGE__BACKENDS__EDGE__SECRETT", "/x")])
        .load()
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("backends.Edge.secrett"));
    assert_eq!(
        err.origin.as_deref(),
        Some("environment variable CACHE_PURGE__BACKENDS__EDGE__SECRETT")
    );
    assert!(
        err.message
            .starts_with("unknown key `secrett`; expected one of `mode`")
    );
}

#[test]
fn a_backend_given_only_by_the_environment_is_named_by_its_variables() {
    let err = SettingsLoader::default()
        .toml("")
        .env_vars([
            ("CACHE_PURGE__BACKENDS__N__KIND", "nginx"),
            ("CACHE_PURGE__BACKENDS__N__MODE", "files"),
        ])
        .load()
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("backends.n.cache_dir"));
    // The key is absent: the origin is where its backend's table came from.
    assert_eq!(
        err.origin.as_deref(),
        Some("environment variable CACHE_PURGE__BACKENDS__N__KIND")
    );
}

/// An application's own configuration, with the settings nested in it.
#[derive(Debug, serde::Deserialize)]
struct AppConfig {
    port: u16,
    #[serde(default)]
    cache_purge: Settings,
}

#[test]
fn settings_nest_in_an_applications_own_configuration() {
    let app: AppConfig = toml::from_str(
        r#"
        port = 8080
        [cache_purge]
        delivery = "immediate"
        [cache_purge.backends.edge]
        kind = "varnish"
        servers = ["127.0.0.1:6082", "[::1]:6083"]
        [cache_purge.backends.local]
        kind = "nginx"
        mode = "wipe"
        cache_dir = "/var/cache/nginx"
        "#,
    )
    .unwrap();
    assert_eq!(app.port, 8080);
    let s = &app.cache_purge;
    assert_eq!(s.delivery, Delivery::Immediate);
    // Defaults for what is not given, as the loader's.
    assert_eq!(s.shutdown_timeout, Settings::default().shutdown_timeout);
    assert_eq!(s.queue_capacity, Settings::default().queue_capacity);
    let BackendSettings::Varnish(v) = &s.backends["edge"].settings else {
        panic!()
    };
    assert_eq!(v.servers[1].host(), "::1");
    assert_eq!(v.timeout, std::time::Duration::from_secs(5));
    assert_eq!(
        v.secret_file,
        cache_purge_hooks_engine::settings::VarnishSettings::default().secret_file
    );
    let BackendSettings::Nginx(n) = &s.backends["local"].settings else {
        panic!()
    };
    assert_eq!(n.mode, NginxMode::Wipe);

    // No table at all: the defaults, one `log` backend.
    let app: AppConfig = toml::from_str("port = 1\n").unwrap();
    assert_eq!(app.cache_purge, Settings::default());
    let app: AppConfig = toml::from_str("port = 1\n[cache_purge]\n").unwrap();
    assert_eq!(app.cache_purge, Settings::default());

    // Bad values: the same errors as from the loader, keyed inside the settings.
    for (text, want) in [
        (
            "port = 1\n[cache_purge.backends.edge]\nkind = \"varnish\"\nservers = [\"nohost\"]\n",
            "invalid cache purge setting `backends.edge.servers[0]`: `nohost` is not `host:port`",
        ),
        (
            "port = 1\n[cache_purge.backends.n]\nkind = \"nginx\"\nmode = \"files\"\ncache_dir = \"/c\"\n",
            "invalid cache purge setting `backends.n.key_template`: required with mode = \"files\"",
        ),
        (
            "port = 1\n[cache_purge]\nspeed = 3\n",
            "invalid cache purge setting `speed`: unknown key `speed`; expected one of `delivery`",
        ),
        (
            "port = 1\n[cache_purge.backends.edge]\nkind = \"varnsh\"\n",
            "invalid cache purge setting `backends.edge.kind`: unknown backend kind `varnsh`",
        ),
    ] {
        let err = toml::from_str::<AppConfig>(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn one_backend_deserializes_on_its_own() {
    let b: BackendSettings = toml::from_str("kind = \"memory\"\nmax_batch = 3\n").unwrap();
    let BackendSettings::Memory(m) = b else {
        panic!()
    };
    assert_eq!(m.max_batch.get(), 3);
    let err = toml::from_str::<BackendSettings>("kind = \"memory\"\nmax_batch = 0\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid cache purge setting `max_batch`: expected at least 1"),
        "{err}"
    );
}

#[test]
fn every_validated_type_parses_from_code_and_from_the_file() {
    use cache_purge_hooks_engine::settings::{
        CacheDir, HeaderName, HostName, HttpMethod, KeyTemplate, Levels, MaxBanLength, PurgePrefix,
        Scheme, ServerAddr,
    };
    // FromStr, for code.
    assert_eq!(
        "127.0.0.1:6082".parse::<ServerAddr>().unwrap().to_string(),
        "127.0.0.1:6082"
    );
    assert_eq!(
        "nohost".parse::<ServerAddr>().unwrap_err().message,
        "`nohost` is not `host:port`"
    );
    assert!("example.com".parse::<HostName>().is_ok());
    assert!("exa_mple com".parse::<HostName>().is_err());
    assert!("X-Ban-Url".parse::<HeaderName>().is_ok());
    assert!("X Ban".parse::<HeaderName>().is_err());
    assert!("PURGE".parse::<HttpMethod>().is_ok());
    assert!("PU RGE".parse::<HttpMethod>().is_err());
    assert!("/purge".parse::<PurgePrefix>().is_ok());
    assert!("/purge/".parse::<PurgePrefix>().is_err());
    assert!("$uri$is_args$args".parse::<KeyTemplate>().is_ok());
    assert!("$uri$foo".parse::<KeyTemplate>().is_err());
    assert!("1:2".parse::<Levels>().is_ok());
    assert!("3:3".parse::<Levels>().is_err());
    assert!("/var/cache/nginx".parse::<CacheDir>().is_ok());
    assert!("/var/../etc".parse::<CacheDir>().is_err());
    assert!("300".parse::<MaxBanLength>().is_ok());
    assert!("100".parse::<MaxBanLength>().is_err());
    assert!("https".parse::<Scheme>().is_ok());
    assert!("ftp".parse::<Scheme>().is_err());

    // The file: the key, the file as origin, the expectation.
    let varnish = "[backends.v]\nkind = \"varnish\"\n";
    let nginx = "[backends.n]\nkind = \"nginx\"\n";
    let cases = [
        (
            format!("{varnish}servers = \"a:1, b\"\n"),
            "backends.v.servers",
            "`b` is not `host:port`",
        ),
        (
            format!("{varnish}servers = [\"a:1\", \"b:0\"]\n"),
            "backends.v.servers[1]",
            "port 0 in `b:0`",
        ),
        (
            format!("{varnish}site_domain = \"a b\"\n"),
            "backends.v.site_domain",
            "`a b` is not a host name (letters, digits, `-`, `.`, port)",
        ),
        (
            format!("{varnish}ban_header = \"X Ban\"\n"),
            "backends.v.ban_header",
            "`X Ban` is not a valid header name",
        ),
        (
            format!("{varnish}lurker_url_header = \"\"\n"),
            "backends.v.lurker_url_header",
            "`` is not a valid header name",
        ),
        (
            format!("{varnish}max_ban_length = 100\n"),
            "backends.v.max_ban_length",
            "expected at least 256 bytes, got 100",
        ),
        (
            format!("{varnish}concurrency = 0\n"),
            "backends.v.concurrency",
            "expected at least 1",
        ),
        (
            format!("{varnish}tags = \"xkey\"\n"),
            "backends.v.tags",
            "`xkey` purges run in VCL (xkey.purge), reached over Varnish's HTTP port: it needs mode = \"http\" (this backend has mode = \"cli\"); over the admin port, use tags = \"ban\"",
        ),
        (
            format!("{varnish}soft_purge = true\ntags = \"ban\"\n"),
            "backends.v.soft_purge",
            "soft purges are xkey's (xkey.softpurge); this backend has tags = \"ban\": set tags = \"xkey\" (with mode = \"http\") or remove soft_purge",
        ),
        (
            format!("{varnish}tags = \"surrogate\"\n"),
            "backends.v.tags",
            "unknown varnish tag purge `surrogate`; expected one of `none`, `ban`, `xkey`",
        ),
        (
            format!("{varnish}http_method = \"get\"\n"),
            "backends.v.http_method",
            "unknown varnish http method `get`; expected one of `purge`, `ban`",
        ),
        (
            format!("{varnish}ban_style = \"url\"\n"),
            "backends.v.ban_style",
            "unknown ban style `url`; expected one of `req_url`, `lurker`",
        ),
        (
            format!("{nginx}method = \"PU RGE\"\n"),
            "backends.n.method",
            "`PU RGE` is not an HTTP method",
        ),
        (
            format!("{nginx}host_header = \"a b\"\n"),
            "backends.n.host_header",
            "`a b` is not a host name",
        ),
        (
            format!("{nginx}purge_prefix = \"/purge/\"\n"),
            "backends.n.purge_prefix",
            "`/purge/` must start with `/`, not end with `/`, and hold no `?`, `#` or space",
        ),
        (
            format!("{nginx}key_template = \"$uri$foo\"\n"),
            "backends.n.key_template",
            "unknown variable `$foo` in `$uri$foo`",
        ),
        (
            format!("{nginx}levels = \"1:2:1:2\"\n"),
            "backends.n.levels",
            "`1:2:1:2` has more than three levels",
        ),
        (
            format!("{nginx}cache_dir = \"/var/../etc\"\n"),
            "backends.n.cache_dir",
            "`/var/../etc` must be an absolute path below `/` without `..`, like /var/cache/nginx",
        ),
        (
            format!("{nginx}scheme = \"ftp\"\n"),
            "backends.n.scheme",
            "expected `http` or `https`, got `ftp`",
        ),
        (
            format!("{nginx}timeout = \"0s\"\n"),
            "backends.n.timeout",
            "expected more than 0s",
        ),
        (
            "[backends.m]\nkind = \"memory\"\nmax_batch = 0\n".to_owned(),
            "backends.m.max_batch",
            "expected at least 1",
        ),
        (
            "[retry]\nmax_age = \"soon\"\n".to_owned(),
            "retry.max_age",
            "invalid value: string \"soon\", expected a duration like \"5s\" or \"250ms\"",
        ),
    ];
    for (text, key, expected) in cases {
        let want = format!("invalid cache purge setting `{key}` (from FILE): {expected}");
        let got = error(&text);
        assert!(
            got.starts_with(&want),
            "for {text:?}:\n got {got}\nwant {want}"
        );
    }
}

#[test]
fn rules_across_keys_are_keyed_to_the_key_they_need() {
    let files =
        "[backends.n]\nkind = \"nginx\"\nmode = \"files\"\ncache_dir = \"/var/cache/nginx\"\n";
    assert_eq!(
        error(files),
        "invalid cache purge setting `backends.n.key_template` (from FILE): required with mode = \"files\": your proxy_cache_key, verbatim (without one, nginx uses \"http://$proxy_host$request_uri\" for proxy_pass http://...)"
    );
    assert_eq!(
        error(&format!(
            "{files}key_template = \"$scheme$proxy_host$request_uri\"\n"
        )),
        "invalid cache purge setting `backends.n.proxy_host` (from FILE): required because key_template `$scheme$proxy_host$request_uri` uses $proxy_host: the host of your proxy_pass (like `origin`)"
    );
    assert_eq!(
        error(&format!("{files}key_template = \"$http_host$uri\"\n")),
        "invalid cache purge setting `backends.n.host_header` (from FILE): required because key_template `$http_host$uri` uses $host: the site's host name"
    );
    assert_eq!(
        error("[backends.n]\nkind = \"nginx\"\nmode = \"wipe\"\n"),
        "invalid cache purge setting `backends.n.cache_dir` (from FILE): required with mode = \"files\" or \"wipe\": the proxy_cache_path directory"
    );
    // Satisfied, it loads; and `http` mode needs none of them.
    assert!(
        Settings::from_toml_str(&format!(
            "{files}key_template = \"$host$uri\"\nhost_header = \"example.com\"\n"
        ))
        .is_ok()
    );
    assert!(
        Settings::from_toml_str(
            "[backends.n]\nkind = \"nginx\"\nkey_template = \"$proxy_host$uri\"\n"
        )
        .is_ok()
    );
}

#[test]
fn settings_round_trip_through_toml() {
    let original = Settings::from_toml_str(
        r#"
        delivery = "outbox"
        shutdown_timeout = "1m 30s"
        queue_capacity = 7
        when_full = "wait"
        [retry]
        max_attempts = 3
        initial_backoff = "250ms"
        [backends.Edge]
        kind = "varnish"
        mode = "http"
        servers = ["127.0.0.1:6081", "[::1]:6082"]
        site_domain = "www.example.com"
        ban_style = "lurker"
        http_method = "ban"
        ban_header = "X-Ban"
        max_ban_length = 4096
        timeout = "2s"
        concurrency = 3
        [backends.files]
        kind = "nginx"
        mode = "files"
        cache_dir = "/var/cache/nginx"
        levels = "2"
        key_template = "${scheme}://$proxy_host$request_uri"
        proxy_host = "origin"
        scheme = "https"
        host_header = "example.com:8443"
        [backends.http]
        kind = "nginx"
        servers = "10.0.0.1:80, 10.0.0.2:8080"
        purge_prefix = "/purge"
        method = "GET"
        [backends.record]
        kind = "memory"
        max_batch = 5
        [backends.quiet]
        kind = "dummy"
        [backends.log]
        kind = "log"
        "#,
    )
    .unwrap();
    let text = toml::to_string(&original).unwrap();
    let again = Settings::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again, original, "{text}");
    assert_eq!(
        toml::to_string(&Settings::default())
            .map(|t| Settings::from_toml_str(&t).unwrap())
            .unwrap(),
        Settings::default()
    );
    // And through an application's own file.
    let app: AppConfig = toml::from_str(&format!(
        "port = 1\n[cache_purge]\n{}",
        text.replace("[backends", "[cache_purge.backends")
            .replace("[retry]", "[cache_purge.retry]")
    ))
    .unwrap();
    assert_eq!(app.cache_purge, original);
}

/// What `NginxBackend::new` refused before values had types is refused where the file is read.
#[test]
fn nginx_values_are_refused_where_the_file_is_read() {
    for (options, key, expected) in [
        (
            "servers = [\"nohost\"]\n",
            "servers[0]",
            "`nohost` is not `host:port`",
        ),
        ("concurrency = 0\n", "concurrency", "expected at least 1"),
        ("timeout = \"0s\"\n", "timeout", "expected more than 0s"),
        (
            "purge_prefix = \"purge\"\n",
            "purge_prefix",
            "`purge` must start with `/`",
        ),
        (
            "method = \"PU RGE\"\n",
            "method",
            "`PU RGE` is not an HTTP method",
        ),
        (
            "host_header = \"a b\"\n",
            "host_header",
            "`a b` is not a host name",
        ),
        (
            "mode = \"wipe\"\ncache_dir = \"/\"\n",
            "cache_dir",
            "`/` must be an absolute path below `/`",
        ),
        (
            "mode = \"wipe\"\ncache_dir = \"cache\"\n",
            "cache_dir",
            "`cache` must be an absolute path",
        ),
        (
            "levels = \"3\"\n",
            "levels",
            "`3` is not an nginx levels value",
        ),
        (
            "scheme = \"ftp\"\n",
            "scheme",
            "expected `http` or `https`, got `ftp`",
        ),
    ] {
        let got = error(&format!("[backends.n]\nkind = \"nginx\"\n{options}"));
        let want =
            format!("invalid cache purge setting `backends.n.{key}` (from FILE): {expected}");
        assert!(got.starts_with(&want), "{options:?}: {got}");
    }
}

#[test]
fn spill_dir_and_repurge_after_are_read_and_checked() {
    let s = Settings::from_toml_str(
        "when_full = \"spill\"\nspill_dir = \"/var/tmp/purges\"\nrepurge_after = \"2s\"\n",
    )
    .unwrap();
    assert_eq!(s.when_full, cache_purge_hooks_engine::QueueFull::Spill);
    assert_eq!(
        s.spill_dir.as_deref(),
        Some(std::path::Path::new("/var/tmp/purges"))
    );
    assert_eq!(s.repurge_after, Some(std::time::Duration::from_secs(2)));
    // Written back as read.
    let again = Settings::from_toml_str(&toml::to_string(&s).unwrap()).unwrap();
    assert_eq!(again, s);
    // The defaults: spill, no second purge.
    let d = Settings::from_toml_str("").unwrap();
    assert_eq!(
        (d.when_full, d.spill_dir, d.repurge_after),
        (cache_purge_hooks_engine::QueueFull::Spill, None, None)
    );
    let err = Settings::from_toml_str("repurge_after = \"0s\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("repurge_after"));
    assert!(err.to_string().contains("more than 0s"), "{err}");
}

/// What `tracing` writes on this thread while `f` runs.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = sink.0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn falling_back_to_the_defaults_is_loud_and_can_be_an_error() {
    // No cache-purge.toml where the tests run, no CACHE_PURGE_CONFIG in this loader.
    let text = logged(|| {
        let s = SettingsLoader::new()
            .env_vars(Vec::<(String, String)>::new())
            .load()
            .unwrap();
        assert_eq!(s, Settings::default());
    });
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("no cache purge settings file"), "{text}");
    assert!(text.contains("cache-purge.toml"), "where it looked: {text}");
    assert!(text.contains("`log` backend that purges nothing"), "{text}");

    let err = SettingsLoader::new()
        .require_file()
        .env_vars(Vec::<(String, String)>::new())
        .load()
        .unwrap_err();
    assert_eq!(
        err.kind,
        cache_purge_hooks_engine::settings::SettingsErrorKind::MissingFile
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn a_near_miss_environment_variable_is_warned_about() {
    let text = logged(|| {
        let s = SettingsLoader::default()
            .toml("")
            .env_vars([("CACHE_PURGE_DELIVERY", "outbox")])
            .load()
            .unwrap();
        // Not read: the default stays.
        assert_eq!(s.delivery, Delivery::AfterCommit);
    });
    assert!(text.contains("CACHE_PURGE_DELIVERY is not read"), "{text}");
    assert!(
        text.contains("did you mean CACHE_PURGE__DELIVERY?"),
        "{text}"
    );
}

#[test]
fn https_servers_are_for_the_http_modes() {
    let s = Settings::from_toml_str(
        "[backends.ngx]\nkind = \"nginx\"\nservers = [\"https://cache.example:8443\"]\n",
    )
    .unwrap();
    let BackendSettings::Nginx(n) = &s.backends["ngx"].settings else {
        panic!()
    };
    assert!(n.servers[0].is_https());
    assert_eq!(n.servers[0].base_url(), "https://cache.example:8443");
    assert_eq!(n.servers[0].to_string(), "https://cache.example:8443");
    let err = Settings::from_toml_str(
        "[backends.v]\nkind = \"varnish\"\nservers = [\"https://v.example:6082\"]\n",
    )
    .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("backends.v.servers"));
    assert!(err.message.contains("mode = \"http\""), "{err}");
}

#[test]
fn cdn_backends_are_read_and_each_mistake_names_its_key() {
    let s = Settings::from_toml_str(
        "[backends.cf]\nkind = \"cloudflare\"\nzone_id = \"023e105f4ecef8ad9ca31a8372d0c353\"\n\
         api_token = \"tok\"\nplan = \"enterprise\"\nsite_url = \"https://www.example.com\"\n\
         rate = \"25/s\"\n\
         [backends.fy]\nkind = \"fastly\"\nservice_id = \"SU1Z0isxPaozGVKXdv0eY\"\napi_token = \"key\"\nsoft = true\n",
    )
    .unwrap();
    let BackendSettings::Cloudflare(cf) = &s.backends["cf"].settings else {
        panic!("{:?}", s.backends["cf"])
    };
    assert_eq!(cf.effective_rate().per_second(), 25.0);
    assert_eq!(cf.effective_burst(), 500);
    assert_eq!(cf.effective_urls_per_request(), 500);
    assert_eq!(cf.base_url.as_str(), "https://api.cloudflare.com/client/v4");
    let BackendSettings::Fastly(fy) = &s.backends["fy"].settings else {
        panic!()
    };
    assert!(fy.soft);
    // The printed settings never hold the tokens.
    let printed = toml::to_string(&s).unwrap();
    assert!(
        !printed.contains("\"tok\"") && !printed.contains("\"key\""),
        "{printed}"
    );

    for (text, key, says) in [
        (
            "[backends.cf]\nkind = \"cloudflare\"\napi_token = \"t\"\n",
            "backends.cf.zone_id",
            "required",
        ),
        (
            "[backends.cf]\nkind = \"cloudflare\"\nzone_id = \"example.com\"\napi_token = \"t\"\n",
            "backends.cf.zone_id",
            "looks like the domain",
        ),
        (
            "[backends.cf]\nkind = \"cloudflare\"\nzone_id = \"023e105f4ecef8ad9ca31a8372d0c353\"\n",
            "backends.cf.api_token",
            "Cache Purge",
        ),
        (
            "[backends.cf]\nkind = \"cloudflare\"\nzone_id = \"023e105f4ecef8ad9ca31a8372d0c353\"\napi_token = \"t\"\nplan = \"gold\"\n",
            "backends.cf.plan",
            "`free`, `pro`, `business`, `enterprise`",
        ),
        (
            "[backends.cf]\nkind = \"cloudflare\"\nzone_id = \"023e105f4ecef8ad9ca31a8372d0c353\"\napi_token = \"t\"\nrate = \"fast\"\n",
            "backends.cf.rate",
            "like `5/s`",
        ),
        (
            "[backends.cf]\nkind = \"cloudflare\"\nzone_id = \"023e105f4ecef8ad9ca31a8372d0c353\"\napi_token = \"t\"\nbase_url = \"api.cloudflare.com\"\n",
            "backends.cf.base_url",
            "not a URL",
        ),
        (
            "[backends.fy]\nkind = \"fastly\"\napi_token = \"k\"\n",
            "backends.fy.service_id",
            "required",
        ),
        (
            "[backends.fy]\nkind = \"fastly\"\nservice_id = \"abc\"\napi_token = \"k\"\nburst = 5\n",
            "backends.fy.burst",
            "needs `rate`",
        ),
    ] {
        let err = Settings::from_toml_str(text).unwrap_err();
        assert_eq!(err.key.as_deref(), Some(key), "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }
    // A token given in the environment.
    let s = SettingsLoader::default()
        .toml("[backends.cf]\nkind = \"cloudflare\"\nzone_id = \"023e105f4ecef8ad9ca31a8372d0c353\"\n")
        .env_vars([("CACHE_PURGE__BACKENDS__CF__API_TOKEN", "from-env")])
        .load()
        .unwrap();
    let BackendSettings::Cloudflare(cf) = &s.backends["cf"].settings else {
        panic!()
    };
    assert_eq!(cf.api_token.as_ref().unwrap().expose(), "from-env");
}

#[test]
fn cloudfront_settings_take_their_keys_from_the_environment_and_refuse_limits_above_cloudfronts() {
    let s = SettingsLoader::default()
        .toml(
            "[backends.cdn]\nkind = \"cloudfront\"\ndistribution_id = \"EDFDVBD6EXAMPLE\"\n\
             hosts = [\"www.example.com\"]\nwait = true\npoll_interval = \"5s\"\n",
        )
        .env_vars([
            (
                "CACHE_PURGE__BACKENDS__CDN__ACCESS_KEY_ID",
                "AKIAIOSFODNN7EXAMPLE",
            ),
            (
                "CACHE_PURGE__BACKENDS__CDN__SECRET_ACCESS_KEY",
                "from-env-secret",
            ),
        ])
        .load()
        .unwrap();
    let BackendSettings::CloudFront(cf) = &s.backends["cdn"].settings else {
        panic!("{:?}", s.backends["cdn"])
    };
    assert_eq!(
        cf.secret_access_key.as_ref().unwrap().expose(),
        "from-env-secret"
    );
    assert_eq!(
        cf.access_key_id.as_ref().unwrap().expose(),
        "AKIAIOSFODNN7EXAMPLE"
    );
    assert!(cf.wait);
    assert_eq!(cf.poll_interval, std::time::Duration::from_secs(5));
    assert_eq!(cf.base_url.as_str(), "https://cloudfront.amazonaws.com");
    assert_eq!(s.backends["cdn"].kind(), "cloudfront");

    for (text, key, says) in [
        (
            "[backends.cdn]\nkind = \"cloudfront\"\naccess_key_id = \"A\"\nsecret_access_key = \"S\"\n",
            "backends.cdn.distribution_id",
            "required",
        ),
        (
            "[backends.cdn]\nkind = \"cloudfront\"\ndistribution_id = \"EDFDVBD6EXAMPLE\"\nsecret_access_key = \"S\"\n",
            "backends.cdn.access_key_id",
            "ACCESS_KEY_ID",
        ),
        (
            "[backends.cdn]\nkind = \"cloudfront\"\ndistribution_id = \"d111.cloudfront.net\"\n",
            "backends.cdn.distribution_id",
            "domain name",
        ),
        (
            "[backends.cdn]\nkind = \"cloudfront\"\ndistribution_id = \"EDFDVBD6EXAMPLE\"\naccess_key_id = \"A\"\n\
             secret_access_key = \"S\"\nmax_wildcards_in_progress = 20\n",
            "backends.cdn.max_wildcards_in_progress",
            "at most 15",
        ),
        (
            "[backends.cdn]\nkind = \"cloudfront\"\ndistribution_id = \"EDFDVBD6EXAMPLE\"\naccess_key_id = \"A\"\n\
             secret_access_key = \"S\"\nwait = true\npoll_interval = \"10s\"\nwait_timeout = \"5s\"\n",
            "backends.cdn.wait_timeout",
            "at least poll_interval",
        ),
    ] {
        let err = Settings::from_toml_str(text).unwrap_err();
        assert_eq!(err.key.as_deref(), Some(key), "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }
}

#[test]
fn akamai_settings_are_read_and_each_mistake_names_its_key() {
    let s = SettingsLoader::default()
        .toml(
            "[backends.ak]\nkind = \"akamai\"\nbase_url = \"https://akab-x.purge.akamaiapis.net\"\n\
             client_token = \"akab-c\"\naccess_token = \"akab-a\"\n\
             network = \"staging\"\naction = \"delete\"\ncp_codes = [12345, \"cpc_678\"]\n",
        )
        .env_vars([(
            "CACHE_PURGE__BACKENDS__AK__CLIENT_SECRET",
            "c2VjcmV0LWZyb20tZW52",
        )])
        .load()
        .unwrap();
    let BackendSettings::Akamai(ak) = &s.backends["ak"].settings else {
        panic!("{:?}", s.backends["ak"])
    };
    assert_eq!(ak.network, AkamaiNetwork::Staging);
    assert_eq!(ak.action, AkamaiAction::Delete);
    assert_eq!(
        ak.cp_codes.iter().map(|c| c.get()).collect::<Vec<_>>(),
        [12345, 678]
    );
    assert_eq!(
        ak.client_secret.as_ref().unwrap().expose(),
        "c2VjcmV0LWZyb20tZW52"
    );
    let printed = toml::to_string(&s).unwrap();
    assert!(!printed.contains("c2VjcmV0LWZyb20tZW52"), "{printed}");
    assert!(!printed.contains("akab-a"), "{printed}");

    for (text, key, says) in [
        (
            "[backends.ak]\nkind = \"akamai\"\n",
            "backends.ak.base_url",
            "edgerc",
        ),
        (
            "[backends.ak]\nkind = \"akamai\"\nsection = \"ccu\"\n",
            "backends.ak.section",
            "needs `edgerc`",
        ),
        (
            "[backends.ak]\nkind = \"akamai\"\nedgerc = \"/e\"\nnetwork = \"prod\"\n",
            "backends.ak.network",
            "`production`, `staging`",
        ),
        (
            "[backends.ak]\nkind = \"akamai\"\nedgerc = \"/e\"\naction = \"purge\"\n",
            "backends.ak.action",
            "`invalidate`, `delete`",
        ),
        (
            "[backends.ak]\nkind = \"akamai\"\nedgerc = \"/e\"\ncp_codes = [\"www.example.com\"]\n",
            "backends.ak.cp_codes",
            "not a CP code",
        ),
    ] {
        let err = Settings::from_toml_str(text).unwrap_err();
        assert!(
            err.key.as_deref().is_some_and(|k| k.starts_with(key)),
            "{key}: {err}"
        );
        assert!(err.to_string().contains(says), "{err}");
    }
}

#[test]
fn hosts_and_paths_are_read_for_every_kind_and_routed_by_the_purger() {
    let s = SettingsLoader::default()
        .toml(
            "[backends.www]\nkind = \"memory\"\nhosts = [\"www.example.com\", \"*.Example.org\"]\npaths = true\n\
             [backends.edge]\nkind = \"varnish\"\nhosts = [\"shop.example\"]\n",
        )
        .without_env()
        .load()
        .unwrap();
    let www = &s.backends["www"];
    assert!(matches!(www.settings, BackendSettings::Memory(_)));
    let hosts: Vec<String> = www
        .common
        .route
        .hosts
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(hosts, ["www.example.com", "*.example.org"]);
    assert!(www.common.route.paths);
    assert!(!s.backends["edge"].common.route.paths);
    // Written back as one flat table, kind first.
    let text = toml::to_string(&s).unwrap();
    assert!(
        text.contains("[backends.www]\nkind = \"memory\"\nmax_batch = 1000\nhosts = [\"www.example.com\", \"*.example.org\"]\npaths = true\n"),
        "{text}"
    );
}

#[test]
fn hosts_come_from_the_environment_as_a_comma_separated_list() {
    let f = file("[backends.www]\nkind = \"memory\"\n");
    let s = SettingsLoader::default()
        .file(f.path())
        .env_vars([
            (
                "CACHE_PURGE__BACKENDS__WWW__HOSTS",
                "www.example.com, *.example.org",
            ),
            ("CACHE_PURGE__BACKENDS__WWW__PATHS", "true"),
        ])
        .load()
        .unwrap();
    let route = &s.backends["www"].common.route;
    assert!(route.paths);
    assert!(route.serves_host("a.example.org") && !route.serves_host("example.net"));

    let err = SettingsLoader::default()
        .file(f.path())
        .env_vars([(
            "CACHE_PURGE__BACKENDS__WWW__HOSTS",
            "www.example.com,https://x.org",
        )])
        .load()
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("backends.www.hosts"));
    assert_eq!(
        err.origin.as_deref(),
        Some("environment variable CACHE_PURGE__BACKENDS__WWW__HOSTS")
    );
}

#[test]
fn a_bad_host_pattern_is_refused_naming_backends_name_hosts() {
    for (text, expected) in [
        (
            "[backends.www]\nkind = \"nginx\"\nhosts = [\"www.example.com\", \"www.*.com\"]\n",
            "invalid cache purge setting `backends.www.hosts[1]` (from FILE): `www.*.com` is not a host pattern: `*` may only stand for the subdomains at the start (`*.example.org`); leave `hosts` out to serve every host",
        ),
        (
            "[backends.www]\nkind = \"nginx\"\nhosts = [\"https://www.example.com/\"]\n",
            "invalid cache purge setting `backends.www.hosts[0]` (from FILE): `https://www.example.com/` is not a host pattern: write the host only, without scheme or path (`www.example.com`)",
        ),
        (
            "[backends.fleet]\nkind = \"nats\"\n[backends.fleet.hosts]\n\"blog.example.com\" = \"blog\"\n",
            "invalid cache purge setting `backends.fleet.hosts` (from FILE): expected a list of host patterns (the hosts this backend serves); the table of host → group of a nats backend is `[backends.NAME.host_groups]`",
        ),
    ] {
        assert_eq!(error(text), expected, "{text}");
    }
}

#[test]
fn cloudfront_hosts_are_the_backends_hosts() {
    let s = Settings::from_toml_str(
        "[backends.cdn]\nkind = \"cloudfront\"\ndistribution_id = \"EDFDVBD6EXAMPLE\"\n\
         access_key_id = \"A\"\nsecret_access_key = \"S\"\nhosts = [\"www.example.com\", \"*.example.org\"]\n",
    )
    .unwrap();
    let BackendSettings::CloudFront(cf) = &s.backends["cdn"].settings else {
        panic!("{:?}", s.backends["cdn"])
    };
    let hosts: Vec<&str> = cf.hosts.iter().map(|h| h.as_str()).collect();
    assert_eq!(hosts, ["www.example.com", "*.example.org"]);
    assert_eq!(s.backends["cdn"].common.route.hosts, cf.hosts);
    // Written back once.
    let text = toml::to_string(&s).unwrap();
    assert_eq!(text.matches("hosts = ").count(), 1, "{text}");
}

#[test]
fn a_varnish_refresh_backend_refuses_what_cannot_work_beside_it_naming_the_key() {
    let http = "[backends.v]\nkind = \"varnish\"\nmode = \"http\"\nservers = [\"127.0.0.1:6081\"]\nhttp_method = \"refresh\"\n";
    for (extra, key, says) in [
        (
            "verify = \"all\"\n",
            "verify",
            "cannot tell from a stale one",
        ),
        (
            "refresh = true\n",
            "refresh",
            "fetch each page a second time",
        ),
    ] {
        let text = format!("{http}{extra}");
        let message = error(&text);
        assert!(
            message.starts_with(&format!("invalid cache purge setting `backends.v.{key}`")),
            "{message}"
        );
        assert!(message.contains(says), "{message}");
    }
    let cli = "[backends.v]\nkind = \"varnish\"\nhttp_method = \"refresh\"\n";
    let message = error(cli);
    assert!(
        message.starts_with("invalid cache purge setting `backends.v.http_method`"),
        "{message}"
    );
    assert!(message.contains("needs mode = \"http\""), "{message}");
    // Alone, it is valid.
    assert!(Settings::from_toml_str(http).is_ok());
}

#[test]
fn verify_settings_are_checked_at_start_up_naming_the_key() {
    for (text, expected) in [
        (
            "[backends.v]\nkind = \"varnish\"\nverify = \"all\"\n",
            "invalid cache purge setting `backends.v.verify_url` (from FILE): required with verify or refresh: the cache's public HTTP address (`http://HOST:PORT`), where the check's GET goes (only nginx and varnish in http mode default to their first server)",
        ),
        (
            "[backends.n]\nkind = \"nginx\"\nverify = 2.5\n",
            "invalid cache purge setting `backends.n.verify` (from FILE): `2.5` is not a sample rate: expected `\"off\"`, `\"all\"` or a share above 0 and at most 1 (`0.1`)",
        ),
        (
            "[backends.n]\nkind = \"nginx\"\nverify = \"sometimes\"\n",
            "invalid cache purge setting `backends.n.verify` (from FILE): unknown verify mode `sometimes`; expected `\"off\"`, `\"all\"` or a share above 0 and at most 1 (`0.1`)",
        ),
        (
            "[backends.n]\nkind = \"nginx\"\nverify = \"all\"\nverify_url = \"127.0.0.1:80\"\n",
            "invalid cache purge setting `backends.n.verify_url` (from FILE): `127.0.0.1:80` is not a URL (relative URL without a base); expected like `https://api.example.com/v1`",
        ),
        (
            "[backends.n]\nkind = \"nginx\"\nverify = \"all\"\nverify_hit = []\n",
            "invalid cache purge setting `backends.n.verify_hit` (from FILE): expected the header's values that mean a hit, like [\"HIT\"]",
        ),
    ] {
        assert_eq!(error(text), expected, "{text}");
    }
    // A sample, with the defaults of its kind.
    let s = Settings::from_toml_str(
        "[backends.n]\nkind = \"nginx\"\nservers = [\"127.0.0.1:8080\"]\nverify = 0.25\n",
    )
    .unwrap();
    let n = &s.backends["n"];
    assert_eq!(
        n.common.verify.mode,
        cache_purge_hooks_engine::verify::VerifyMode::Sample(0.25)
    );
    assert_eq!(n.verify_url().unwrap().as_str(), "http://127.0.0.1:8080");
    assert_eq!(n.verify_header(), "X-Cache-Status");
    let text = toml::to_string(&s).unwrap();
    assert!(text.contains("verify = 0.25\n"), "{text}");
}
