#!/usr/bin/env bash
# Runs every check and test of cache-purge-hooks: formatting, clippy, unit, integration,
# compile-fail (trybuild) and doc tests, against SQLite and, on 127.0.0.1, PostgreSQL
# (trust auth, database `test`) and MariaDB (root, empty password, database `test`), and
# real nginx (with ngx_cache_purge), varnishd, redis-server and nats-server instances that the tests start themselves on
# free loopback ports.
#
# It installs and starts what it needs where it can (it must run as root for that) and, with
# CI=true, fails when a required server cannot be reached instead of skipping it. The nginx
# and Varnish tests always fail, never skip, when their binaries are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# A CI run builds once from scratch: incremental compilation would only fill the disk.
if [ "${CI:-}" = "true" ]; then
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi

log() { printf '\n== %s\n' "$*"; }

reachable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_databases() {
  if ! reachable 5432; then
    if command -v pg_ctlcluster >/dev/null 2>&1; then
      log "starting PostgreSQL"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
  fi
  if ! reachable 3306; then
    if [ -x /usr/sbin/mariadbd ]; then
      log "starting MariaDB"
      start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
    fi
  fi
  for _ in $(seq 1 30); do
    reachable 5432 && reachable 3306 && return 0
    sleep 1
  done
  if [ "${CI:-}" = "true" ]; then
    echo "PostgreSQL (5432) or MariaDB (3306) is not reachable on 127.0.0.1; CI requires both" >&2
    exit 1
  fi
  echo "warning: PostgreSQL or MariaDB not reachable; their tests will be skipped (CI=true requires them)" >&2
}

# nginx with Debian's cache purge module, and Varnish (which compiles VCL with gcc at run
# time) with varnish-modules (xkey). Only the binaries are needed: the tests start their
# own instances, and the packages' own services are stopped so they hold no ports.
ensure_proxies() {
  local missing=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  [ -f /usr/share/nginx/modules/ngx_http_cache_purge_module.so ] || missing+=(libnginx-mod-http-cache-purge)
  [ -x /usr/sbin/varnishd ] || missing+=(varnish)
  # The xkey vmod, for purges by tag (deploy/varnish/cache-purge-xkey.vcl).
  compgen -G '/usr/lib/*/varnish/vmods/libvmod_xkey.so' >/dev/null || missing+=(varnish-modules)
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)
  # The benchmark's smoke run forks curl (the seed's way of purging nginx) as a reference.
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  # ... and runs wrk (the load generator) as the reference of its HTTP purge scenarios.
  [ -x /usr/bin/wrk ] || missing+=(wrk)
  # The tag index tests start their own redis-server (no persistence) on a free port.
  [ -x /usr/bin/redis-server ] || missing+=(redis-server)
  # The fleet tests (nats backend, cache-purge agent) start their own nats-server -js.
  [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then
      echo "missing ${missing[*]}; run as root, or: sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts the packaged services where it can; the tests need none of them.
    service nginx stop >/dev/null 2>&1 || true
    service varnish stop >/dev/null 2>&1 || true
    service redis-server stop >/dev/null 2>&1 || true
    service nats-server stop >/dev/null 2>&1 || true
  fi
}

# The Diesel integration's tests use Diesel's blocking PostgreSQL and MySQL connections, which
# link libpq and libmysqlclient (MariaDB's client library on Debian).
ensure_client_libraries() {
  local missing=()
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  pkg-config --exists libpq 2>/dev/null || missing+=(libpq-dev)
  pkg-config --exists mysqlclient 2>/dev/null || missing+=(default-libmysqlclient-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then
      echo "missing ${missing[*]}; run as root, or: sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_databases
ensure_proxies
ensure_client_libraries

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
# Every backend is a cargo feature: the engine must also build with none of them.
cargo clippy -p cache-purge-hooks-engine --no-default-features -- -D warnings
cargo clippy -p cache-purge-hooks-engine --no-default-features --features varnish -- -D warnings
cargo clippy -p cache-purge-hooks-engine --no-default-features --features nginx -- -D warnings
cargo clippy -p cache-purge-hooks-engine --no-default-features --features verify,memory -- -D warnings
cargo clippy -p cache-purge-hooks-engine --no-default-features --features redis -- -D warnings
cargo clippy -p cache-purge-hooks-engine --all-targets --features redis -- -D warnings
cargo clippy -p cache-purge-hooks-engine --all-targets --features metrics -- -D warnings
# The CDN backends, each alone and together with their tests (against local fakes).
cargo clippy -p cache-purge-hooks-engine --no-default-features --features cloudflare -- -D warnings
cargo clippy -p cache-purge-hooks-engine --no-default-features --features fastly -- -D warnings
cargo clippy -p cache-purge-hooks-engine --no-default-features --features cloudfront -- -D warnings
cargo clippy -p cache-purge-hooks-engine --all-targets --features cloudflare,fastly,cloudfront -- -D warnings
cargo clippy -p cache-purge-hooks-engine --no-default-features --features akamai -- -D warnings
cargo clippy -p cache-purge-hooks-engine --all-targets --features akamai -- -D warnings
cargo clippy -p cache-purge-hooks-engine --no-default-features --features nats -- -D warnings
cargo clippy -p cache-purge-hooks-engine --all-targets --features nats -- -D warnings
# The crate for backend authors stays lean: no HTTP client, no settings, no digests.
if cargo tree -p cache-purge-hooks-core -e normal --prefix none | grep -E '^(reqwest|hyper|config|sha2|md-5|serde) '; then
  echo "cache-purge-hooks-core must not depend on the crates above" >&2
  exit 1
fi
# The facade with the Diesel and tower integrations (not default features).
cargo clippy -p cache-purge-hooks --features tower,diesel-postgres,diesel-sqlite,diesel-mysql,diesel-async -- -D warnings
# The SeaORM integration without sea-orm-migration.
cargo clippy -p cache-purge-hooks-sea-orm --no-default-features -- -D warnings

log "cargo doc -D warnings (broken links, missing docs)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p cache-purge-hooks-engine --all-features --quiet

log "cargo test (unit, integration, compile-fail, doc tests)"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
cargo test --workspace --all-targets 2>&1 | tee -a "$results"
cargo test --workspace --doc 2>&1 | tee -a "$results"
# The optional `metrics` feature's own test.
cargo test -p cache-purge-hooks-engine --features metrics --lib dispatch 2>&1 | tee -a "$results"
# The CDN backends against the enforcing fakes of their APIs (required-features: the
# workspace run above builds them through the CLI's features; this says so explicitly).
cargo test -p cache-purge-hooks-engine --features cloudflare,fastly,cloudfront --test cloudflare --test fastly --test cloudfront 2>&1 | tee -a "$results"
# Akamai: EdgeGrid signing against Akamai's published vectors, settings, and the backend
# against the enforcing Fast Purge fake.
cargo test -p cache-purge-hooks-engine --features akamai --lib akamai 2>&1 | tee -a "$results"
cargo test -p cache-purge-hooks-engine --features akamai --test akamai 2>&1 | tee -a "$results"
# The `nats` backend (feature nats): its wire format, settings, and against a real nats-server.
cargo test -p cache-purge-hooks-engine --features nats --lib backend::nats 2>&1 | tee -a "$results"
cargo test -p cache-purge-hooks-engine --features nats --test nats 2>&1 | tee -a "$results"
cargo test -p cache-purge-hooks-engine --features nats --doc nats 2>&1 | tee -a "$results"
cargo test -p cache-purge-hooks-engine --features nats --lib fleet 2>&1 | tee -a "$results"
# (cache-purge agent and fleet status, crates/cli/tests/fleet.rs, run with the workspace: the
# CLI enables the engine's nats feature.)

log "cargo publish --dry-run: every published crate packages and builds from its tarball"
# (--allow-dirty: the tests may leave proptest regression files behind.)
cargo publish --workspace --dry-run --allow-dirty --quiet

log "main job: the blog demo on SQLite with the default backend"
cargo run -q -p migrations-example >/dev/null

log "benchmark smoke run: every purge method against real nginx and varnishd, and the fleet over nats-server, small counts"
# Debug-build figures mean nothing; this checks that the benchmark runs, purges what it says
# (it exits 1 when a check fails: scenario 7, when a save is not purged on every node) and
# stops its servers.
cargo run -q -p cache-purge-hooks-bench -- --quick >/dev/null

log "all checks passed"
# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$results"
