//! `cache-purge`: the command-line tool of cache-purge-hooks. See `cache-purge --help` and
//! docs/cli.md.

fn main() -> std::process::ExitCode {
    cache_purge_hooks_cli::main()
}
