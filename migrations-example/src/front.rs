//! A real cache in front of the blog, started from the configuration the project ships
//! (`deploy/nginx/`, `deploy/varnish/`), and the cache-purge-hooks settings that purge it.
//!
//! The servers are started and stopped by `cache-purge-hooks-testing`, the crate the test
//! suite uses: a child process in its own temp dir on free loopback ports, stopped by PID.

use std::fmt::Write as _;
use std::path::Path;

use cache_purge_hooks_testing::{HarnessError, Nginx, NginxConfig, Page, Varnish};

/// Which cache to put in front of the blog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheKind {
    /// nginx with Debian's ngx_cache_purge module: `deploy/nginx/nginx.conf` and
    /// `deploy/nginx/cache-purge.conf`.
    Nginx,
    /// varnishd: `deploy/varnish/cache-purge.vcl`.
    Varnish,
}

impl CacheKind {
    /// `nginx` or `varnish`.
    pub fn name(self) -> &'static str {
        match self {
            CacheKind::Nginx => "nginx",
            CacheKind::Varnish => "varnish",
        }
    }
}

/// A cache server running in front of the blog.
#[derive(Debug)]
pub enum FrontCache {
    /// nginx, purged over HTTP at `/purge/<path>`.
    Nginx(Nginx),
    /// varnishd, purged with bans over its admin port.
    Varnish(Varnish),
}

impl FrontCache {
    /// Starts the cache of `kind` in front of the blog on `127.0.0.1:blog_port`, and waits
    /// until it is ready. Fails (naming the `apt-get install` command) when nginx, its cache
    /// purge module or varnishd is not installed.
    pub async fn start(kind: CacheKind, blog_port: u16) -> Result<FrontCache, HarnessError> {
        Ok(match kind {
            CacheKind::Nginx => FrontCache::Nginx(
                Nginx::start_in_front_of(blog_port, NginxConfig::default()).await?,
            ),
            CacheKind::Varnish => FrontCache::Varnish(Varnish::start_in_front_of(blog_port).await?),
        })
    }

    /// Which cache this is.
    pub fn kind(&self) -> CacheKind {
        match self {
            FrontCache::Nginx(_) => CacheKind::Nginx,
            FrontCache::Varnish(_) => CacheKind::Varnish,
        }
    }

    /// The address visitors use, `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        match self {
            FrontCache::Nginx(nginx) => nginx.addr(),
            FrontCache::Varnish(varnish) => varnish.http_addr(),
        }
    }

    /// `http://<address>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The PID of the server's main process.
    pub fn pid(&self) -> u32 {
        match self {
            FrontCache::Nginx(nginx) => nginx.pid(),
            FrontCache::Varnish(varnish) => varnish.pid(),
        }
    }

    /// The configuration files it runs, as written into its temp dir.
    pub fn config_files(&self) -> Vec<&Path> {
        match self {
            FrontCache::Nginx(nginx) => vec![nginx.config_path(), nginx.site_config_path()],
            FrontCache::Varnish(varnish) => vec![varnish.vcl_path()],
        }
    }

    /// The shipped files those were made from, relative to the repository.
    pub fn shipped_files(&self) -> &'static [&'static str] {
        match self {
            FrontCache::Nginx(_) => &["deploy/nginx/nginx.conf", "deploy/nginx/cache-purge.conf"],
            FrontCache::Varnish(_) => &["deploy/varnish/cache-purge.vcl"],
        }
    }

    /// The `cache-purge.toml` that purges this cache: for nginx the `nginx` backend in
    /// `http` mode with `purge_prefix = "/purge"`, purging tags through a tag index
    /// (`tags = "index"`: the purger needs one, [`PurgerBuilder::needs_tag_index`](cache_purge_hooks::PurgerBuilder::needs_tag_index)); for Varnish the `varnish` backend in
    /// `cli` mode (its admin port and secret) with lurker-friendly bans.
    pub fn settings_toml(&self) -> String {
        let mut toml = String::new();
        match self {
            FrontCache::Nginx(nginx) => {
                let _ = write!(
                    toml,
                    "# Purges the nginx in front of the blog (deploy/nginx/cache-purge.conf):\n\
                     # one request per URL to its separate purge location. nginx keeps no\n\
                     # tags: a tag is purged as the URLs the blog recorded under it (a tag\n\
                     # index in the blog's database, filled as pages are served).\n\
                     [backends.nginx]\n\
                     kind = \"nginx\"\n\
                     servers = [{}]\n\
                     purge_prefix = \"/purge\"\n\
                     tags = \"index\"\n",
                    toml_string(&nginx.addr())
                );
            }
            FrontCache::Varnish(varnish) => {
                let _ = write!(
                    toml,
                    "# Purges the varnishd in front of the blog (deploy/varnish/cache-purge.vcl):\n\
                     # one ban per batch over its admin port, testing the x-url header the VCL\n\
                     # stores, so the ban lurker can retire it; tags are banned on the xkey\n\
                     # header the VCL keeps (whole tags only: post:a never bans post:ab).\n\
                     [backends.varnish]\n\
                     kind = \"varnish\"\n\
                     servers = [{}]\n\
                     secret_file = {}\n\
                     ban_style = \"lurker\"\n\
                     tags = \"ban\"\n",
                    toml_string(&varnish.admin_addr()),
                    toml_string(&varnish.secret_file().display().to_string())
                );
            }
        }
        toml
    }

    /// `GET path` through the cache; [`Page::is_hit`] says whether the cache answered it.
    pub async fn get(&self, path: &str) -> Result<Page, HarnessError> {
        match self {
            FrontCache::Nginx(nginx) => nginx.get(path).await,
            FrontCache::Varnish(varnish) => varnish.get(path).await,
        }
    }

    /// What the cache itself records about purges, as lines: for nginx the `PURGE` requests
    /// in its access log (`PURGE /purge/posts/a 200`), for Varnish its ban list.
    pub fn purge_records(&self) -> Result<Vec<String>, HarnessError> {
        match self {
            FrontCache::Nginx(nginx) => Ok(nginx
                .access_log()
                .lines()
                .filter(|line| line.starts_with("PURGE "))
                .map(|line| line.split(" cache=").next().unwrap_or(line).to_owned())
                .collect()),
            FrontCache::Varnish(varnish) => varnish.ban_list(),
        }
    }

    /// Stops the server (its whole process group, by PID) and removes its temp dir.
    pub fn stop(self) -> Result<(), HarnessError> {
        match self {
            FrontCache::Nginx(nginx) => nginx.stop(),
            FrontCache::Varnish(varnish) => varnish.stop(),
        }
    }
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use cache_purge_hooks::Settings;
    use cache_purge_hooks::settings::BackendSettings;

    use super::toml_string;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("x\ny"), r#""x\u000Ay""#);
        let odd_path = "/tmp/a b\"c\\d";
        let settings = Settings::from_toml_str(&format!(
            "[backends.v]\nkind = \"varnish\"\nsecret_file = {}\n",
            toml_string(odd_path)
        ))
        .expect("valid settings");
        match settings.backends.get("v").map(|b| &b.settings) {
            Some(BackendSettings::Varnish(varnish)) => {
                assert_eq!(varnish.secret_file, std::path::Path::new(odd_path));
            }
            other => panic!("expected a varnish backend, got {other:?}"),
        }
    }
}
