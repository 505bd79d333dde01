//! The commands the README and docs/example.md tell a person to run, run the way they run
//! them (the built binaries, as child processes), with their output checked.
//!
//! The `--behind` cases start the real nginx and varnishd and fail, never skip, when they
//! are missing.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BLOG: &str = env!("CARGO_BIN_EXE_blog");
const BLOG_DEMO: &str = env!("CARGO_BIN_EXE_blog-demo");

/// A command with none of the variables that would point it elsewhere than its defaults.
fn command(program: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env_remove("DATABASE_URL")
        .env_remove("CACHE_PURGE_CONFIG")
        .env_remove("RUST_LOG")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// Runs it to the end (at most 120 s, then it is killed) and returns its output.
fn run(mut command: Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the program");
    let pid = child.id();
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match result.recv_timeout(Duration::from_secs(120)) {
        Ok(output) => output.expect("waiting for the program"),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("{command:?} did not finish within 120 s (killed)");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn blog_demo_prints_what_each_write_purged() {
    let output = run(command(BLOG_DEMO));
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{}",
        output.status,
        text(&output.stderr)
    );
    // The lines the README quotes.
    for block in [
        "4. change the slug `hello-world` -> `hello-rust` (old and new URLs)\n    \
         purged: /posts/hello-world\n    purged: /\n    purged: /categories/1\n    \
         purged: /feed.xml?category=1\n    purged: /posts/hello-rust\n",
        "5. delete `second-post` given only its id (the row is loaded to find its URLs)\n    \
         purged: /posts/second-post\n",
        "7. a transaction that changes a slug, then rolls back\n    purged: nothing\n",
        "9. comment on `hello-rust` (URLs from a resolver registered at start-up)\n    \
         purged: /posts/hello-rust\n    purged: /\n10. ",
    ] {
        assert!(stdout.contains(block), "missing:\n{block}\nin:\n{stdout}");
    }
}

/// Runs `blog --behind <cache> --demo` and checks the cycle it prints, and that the cache it
/// started is gone afterwards (process and temp dir).
fn demo_behind(cache: &str) -> String {
    let mut blog = command(BLOG);
    blog.args(["--behind", cache, "--demo"]);
    let output = run(blog);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{}",
        output.status,
        text(&output.stderr)
    );
    for line in [
        "   GET /posts/hello-world   200 MISS “Hello, world”\n   \
         GET /posts/hello-world   200 HIT  “Hello, world”\n",
        "   -> 303 saved post hello-world; purged /posts/hello-world, /, /categories/1, \
         /feed.xml?category=1\n",
        "   GET /posts/hello-world   200 MISS “Hello, cache”  (purged: the new title)\n",
        "   GET /                    200 MISS “Posts”  (purged: it lists the post)\n",
        "   GET /posts/second-post   200 HIT  “A second post”  (not purged: still cached)\n",
        "\nOK: /posts/hello-world was a HIT, the edit purged it",
    ] {
        assert!(stdout.contains(line), "missing:\n{line}\nin:\n{stdout}");
    }
    // "nginx:    http://127.0.0.1:PORT  (pid N), ..." and its config files in its temp dir.
    let header = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{cache}:")))
        .unwrap_or_else(|| panic!("no {cache} line in:\n{stdout}"));
    let pid: i32 = header
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {header:?}"));
    assert_eq!(
        kill(Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH),
        "{cache} (pid {pid}) still runs"
    );
    let config = stdout
        .lines()
        .find(|l| l.contains("(from deploy/"))
        .and_then(|l| l.split_whitespace().next())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no config file in:\n{stdout}"));
    let temp_dir = config.parent().expect("config file in a dir");
    assert!(!temp_dir.exists(), "{} left behind", temp_dir.display());
    stdout
}

#[test]
fn blog_behind_nginx_demo_shows_hit_edit_miss() {
    let stdout = demo_behind("nginx");
    assert!(
        stdout.contains("     PURGE /purge/posts/hello-world 200\n"),
        "{stdout}"
    );
}

#[test]
fn blog_behind_varnish_demo_shows_hit_edit_miss() {
    let stdout = demo_behind("varnish");
    assert!(
        stdout.contains("   varnishd's ban list now has:\n     obj.http.x-url ~ ^(?:"),
        "{stdout}"
    );
}

#[test]
fn behind_varnish_a_list_variant_no_url_names_goes_fresh_by_its_tags() {
    let stdout = demo_behind("varnish");
    assert!(
        stdout.contains(
            "     obj.http.xkey ~ (?:^|[\\x20,])(?:post:hello-world|posts)(?:[\\x20,]|$)\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "   GET /?page=1             200 MISS “Posts”  (purged by its tags: no URL names it)\n"
        ),
        "{stdout}"
    );
    // The post's neighbour carries only its own tag: still cached.
    assert!(
        stdout.contains(
            "   GET /posts/second-post   200 HIT  “A second post”  (not purged: still cached)\n"
        ),
        "{stdout}"
    );
}

#[test]
fn behind_nginx_a_list_variant_no_url_names_goes_fresh_through_the_tag_index() {
    let stdout = demo_behind("nginx");
    // nginx keeps no tags: the post's tags were expanded to the URLs the blog recorded under
    // them as it served them, `/?page=1` among them.
    assert!(
        stdout.contains("     PURGE /purge/?page=1 200\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "   GET /?page=1             200 MISS “Posts”  (purged by its tags, through the tag \
             index: no URL names it)\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "   GET /posts/second-post   200 HIT  “A second post”  (not purged: still cached)\n"
        ),
        "{stdout}"
    );
}

/// Reads the child's stdout on a thread, line by line.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread")]
async fn the_blog_alone_serves_edits_and_stops_on_ctrl_c() {
    let mut child = command(BLOG)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting blog");
    let pid = Pid::from_raw(child.id() as i32);
    let lines = lines_of(&mut child);
    let first = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("blog printed nothing");
    // "blog:     http://127.0.0.1:PORT  (SQLite ...; 3 posts, sample content written)"
    let base = first
        .split_whitespace()
        .nth(1)
        .filter(|url| url.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    assert!(
        first.ends_with("3 posts, sample content written)"),
        "{first}"
    );

    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(format!("{base}/posts/hello-world"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "public, max-age=300");
    assert!(page.text().await.unwrap().contains("<h1>Hello, world</h1>"));
    let saved = http
        .post(format!("{base}/admin/posts/hello-world"))
        .form(&[("title", "Hello again")])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 303);
    assert_eq!(saved.headers()["cache-control"], "no-store");
    let page = http
        .get(format!("{base}/posts/hello-world"))
        .send()
        .await
        .unwrap();
    assert!(page.text().await.unwrap().contains("<h1>Hello again</h1>"));
    let missing = http.get(format!("{base}/posts/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let bad = http
        .post(format!("{base}/admin/posts/hello-world"))
        .form(&[("title", " ")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Ctrl-C.
    kill(pid, Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("blog did not stop within 20 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(
        rest.last().map(String::as_str),
        Some("stopped the blog"),
        "{rest:?}"
    );
    assert!(
        http.get(format!("{base}/")).send().await.is_err(),
        "still serving after it stopped"
    );
}

#[test]
fn the_blog_refuses_to_listen_beyond_loopback() {
    let mut blog = command(BLOG);
    blog.args(["--listen", "0.0.0.0:0"]);
    let output = run(blog);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("only listens on a loopback address"),
        "{}",
        text(&output.stderr)
    );
}
