//! A real `nats-server` with JetStream on a free loopback port, for the fleet tests.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::background::off_thread;
use crate::error::{HarnessError, Result};
use crate::ports;
use crate::process::{self, ServerProcess};

/// Where Debian's `nats-server` package puts the binary.
const NATS_BIN: &str = "/usr/sbin/nats-server";

/// The NATS server a machine may run for everyone, used only when `nats-server` is missing.
const SHARED_PORT: u16 = 4222;

/// A NATS server with JetStream for one test.
///
/// Normally its own `nats-server -js -p <free port> -sd <temp dir> -a 127.0.0.1`, in its own
/// process group, with its JetStream store in its own temp dir; [`Nats::stop`] (or dropping
/// it) stops it by PID and removes the dir. When the binary is missing (Debian: `apt-get
/// install nats-server`) and a JetStream server answers on the shared 127.0.0.1:4222, that one
/// is used instead ([`Nats::is_shared`]), and nothing is started or stopped: give streams,
/// consumers and buckets names of their own ([`Nats::unique_name`]). With neither,
/// [`Nats::start`] fails (under `CI=true` too: the fleet tests never skip).
///
/// ```no_run
/// use cache_purge_hooks_testing::Nats;
///
/// # fn example() -> Result<(), cache_purge_hooks_testing::HarnessError> {
/// let nats = Nats::start_blocking()?;
/// let url = nats.url(); // nats://127.0.0.1:PORT
/// // ... point the code under test at `url` ...
/// nats.stop()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Nats {
    // Field order matters for Drop: the process stops before its temp dir is removed.
    process: Option<ServerProcess>,
    dir: Option<tempfile::TempDir>,
    binary: Option<PathBuf>,
    root: PathBuf,
    pid: u32,
    port: u16,
    /// The options of its [`NatsConfig`], kept for [`Nats::restart`].
    options: Vec<OsString>,
    tls: Option<NatsTlsFiles>,
    nkey_seed: Option<String>,
}

/// How a [`Nats`] server authenticates its clients and whether it speaks TLS
/// ([`Nats::start_with`]); the default is neither, as [`Nats::start`].
///
/// ```no_run
/// use cache_purge_hooks_testing::{Nats, NatsConfig};
///
/// # fn example() -> Result<(), cache_purge_hooks_testing::HarnessError> {
/// let nats = Nats::start_with_blocking(NatsConfig::token("s3cret").with_tls())?;
/// let ca = &nats.tls().unwrap().ca_file; // trust it in the client's settings
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Clients must give this token (`--auth`).
    pub token: Option<String>,
    /// Clients must give this user and password (`--user`, `--pass`).
    pub user: Option<(String, String)>,
    /// Clients must sign in with a user NKey made for this server (its public key in the
    /// server's `authorization { users }`; the seed is [`Nats::nkey_seed`]).
    pub nkey: bool,
    /// Only TLS clients (`--tls`), with a certificate for `127.0.0.1` and `localhost` signed
    /// by a CA made for this server ([`Nats::tls`]).
    pub tls: bool,
    /// With `tls`, clients must also show a certificate signed by that CA (`--tlsverify`).
    pub verify_clients: bool,
}

impl NatsConfig {
    /// Clients must give `token`.
    pub fn token(token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..Self::default()
        }
    }

    /// Clients must give `user` and `password`.
    pub fn user(user: &str, password: &str) -> Self {
        Self {
            user: Some((user.to_owned(), password.to_owned())),
            ..Self::default()
        }
    }

    /// Clients must sign in with a user NKey made for this server ([`Nats::nkey_seed`]).
    pub fn nkey() -> Self {
        Self {
            nkey: true,
            ..Self::default()
        }
    }

    /// Only TLS clients.
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Only TLS clients with a client certificate of the server's CA.
    pub fn with_client_certificates(mut self) -> Self {
        self.tls = true;
        self.verify_clients = true;
        self
    }

    fn is_plain(&self) -> bool {
        self == &Self::default()
    }
}

/// The PEM files of a TLS [`Nats`] server, in its temp dir: the CA to trust, and a client
/// certificate the CA signed (for [`NatsConfig::verify_clients`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsTlsFiles {
    /// The CA certificate that signed the server's and the client's certificates.
    pub ca_file: PathBuf,
    /// A client certificate signed by the CA.
    pub client_cert_file: PathBuf,
    /// Its private key.
    pub client_key_file: PathBuf,
}

impl Nats {
    /// Starts `nats-server -js` and waits (up to 30 s) until it accepts clients with
    /// JetStream enabled. Works on any Tokio runtime flavour (the blocking work runs on its
    /// own thread).
    ///
    /// Without the binary, uses the shared server on 127.0.0.1:4222 if it answers with
    /// JetStream; else fails with [`HarnessError::MissingBinary`]. Fails with
    /// [`HarnessError::StartFailed`] (quoting its log) when the server does not start. A port
    /// taken meanwhile is retried.
    pub async fn start() -> Result<Nats> {
        off_thread("cph-nats-start", Nats::start_blocking).await
    }

    /// [`Nats::start`] for synchronous code.
    pub fn start_blocking() -> Result<Nats> {
        Self::start_with_blocking(NatsConfig::default())
    }

    /// [`Nats::start`] with authentication or TLS. Never uses the shared server (it cannot
    /// be configured): without the binary this fails with [`HarnessError::MissingBinary`].
    pub async fn start_with(config: NatsConfig) -> Result<Nats> {
        off_thread("cph-nats-start", move || Nats::start_with_blocking(config)).await
    }

    /// [`Nats::start_with`] for synchronous code.
    pub fn start_with_blocking(config: NatsConfig) -> Result<Nats> {
        let binary = match process::find_binary(
            "nats-server",
            &[NATS_BIN],
            "the fleet tests need it (apt-get install nats-server)",
        ) {
            Ok(binary) => binary,
            Err(missing) => {
                if config.is_plain() && jetstream_answers(SHARED_PORT) {
                    tracing::warn!(
                        "nats-server is not installed: using the shared JetStream server on 127.0.0.1:{SHARED_PORT}"
                    );
                    return Ok(Nats {
                        process: None,
                        dir: None,
                        binary: None,
                        root: PathBuf::new(),
                        pid: 0,
                        port: SHARED_PORT,
                        options: Vec::new(),
                        tls: None,
                        nkey_seed: None,
                    });
                }
                return Err(missing);
            }
        };
        let dir = process::server_temp_dir("cph-nats-")?;
        let root = dir.path().to_path_buf();
        let mut options: Vec<OsString> = Vec::new();
        if let Some(token) = &config.token {
            options.extend(["--auth".into(), token.into()]);
        }
        if let Some((user, password)) = &config.user {
            options.extend([
                "--user".into(),
                user.into(),
                "--pass".into(),
                password.into(),
            ]);
        }
        let nkey_seed = if config.nkey {
            let user = nkeys::KeyPair::new_user();
            let seed = user.seed().map_err(|e| HarnessError::StartFailed {
                server: "nats-server",
                reason: format!("cannot make its NKey: {e}"),
                config: root.clone(),
                logs: String::new(),
            })?;
            let conf = root.join("auth.conf");
            let text = format!(
                "authorization {{\n  users = [ {{ nkey: \"{}\" }} ]\n}}\n",
                user.public_key()
            );
            std::fs::write(&conf, text).map_err(|source| HarnessError::Io {
                context: format!("writing {}", conf.display()),
                source,
            })?;
            options.extend(["-c".into(), conf.into()]);
            Some(seed)
        } else {
            None
        };
        let tls = if config.tls {
            let files = write_certificates(&root)?;
            options.extend([
                "--tls".into(),
                "--tlscert".into(),
                root.join("server.pem").into(),
                "--tlskey".into(),
                root.join("server-key.pem").into(),
            ]);
            if config.verify_clients {
                options.extend([
                    "--tlsverify".into(),
                    "--tlscacert".into(),
                    files.ca_file.clone().into(),
                ]);
            }
            Some(files)
        } else {
            None
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = ports::free_port()?;
            match spawn_ready(&binary, &root, port, &options) {
                Ok(server) => {
                    return Ok(Nats {
                        pid: server.pid(),
                        process: Some(server),
                        dir: Some(dir),
                        binary: Some(binary),
                        root,
                        port,
                        options,
                        tls,
                        nkey_seed,
                    });
                }
                Err((in_use, _)) if in_use && attempt < process::PORT_ATTEMPTS => {
                    for log in ["stdout.log", "stderr.log"] {
                        let _ = std::fs::remove_file(root.join(log));
                    }
                }
                Err((_, error)) => return Err(error),
            }
        }
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The user NKey seed (`SU...`) of a server started with [`NatsConfig::nkey`].
    pub fn nkey_seed(&self) -> Option<&str> {
        self.nkey_seed.as_deref()
    }

    /// The CA and client certificate of a server started [`NatsConfig::with_tls`].
    pub fn tls(&self) -> Option<&NatsTlsFiles> {
        self.tls.as_ref()
    }

    /// The PID of the server (0 for the shared server).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether this is the machine's shared server on 127.0.0.1:4222 (the binary is missing),
    /// which this value neither started nor stops, and which [`Nats::kill_server`] and
    /// [`Nats::restart`] refuse to touch.
    pub fn is_shared(&self) -> bool {
        self.process.is_none() && self.dir.is_none() && self.binary.is_none()
    }

    /// `prefix` with a random suffix of letters: a stream, consumer or bucket name no other
    /// test uses, even on a shared server.
    pub fn unique_name(prefix: &str) -> String {
        let suffix: String = (0..8)
            .map(|_| char::from(b'a' + (fastrand_u8() % 26)))
            .collect();
        format!("{prefix}{suffix}")
    }

    /// Takes the server down (SIGTERM to its group, SIGKILL after 5 s), keeping its JetStream
    /// store, so the port refuses connections until [`Nats::restart`]. For fault tests.
    pub fn kill_server(&mut self) -> Result<()> {
        self.own("kill_server")?;
        if let Some(mut server) = self.process.take() {
            server.terminate(process::STOP_GRACE)?;
        }
        Ok(())
    }

    /// Starts the server again (stopping it first if it runs) on the same port with the same
    /// JetStream store: streams, consumers and their acks survive, as with a real restart.
    /// Waits up to 30 s until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        self.kill_server()?;
        let Some(binary) = self.binary.clone() else {
            return Err(self.refused("restart"));
        };
        let server =
            spawn_ready(&binary, &self.root, self.port, &self.options).map_err(|(_, e)| e)?;
        self.pid = server.pid();
        self.process = Some(server);
        Ok(())
    }

    /// Stops the server (SIGTERM to its process group, SIGKILL after 5 s) and removes its
    /// temp dir; an error also if it had died during the test. Dropping does the same. The
    /// shared server is left alone.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn own(&self, what: &'static str) -> Result<()> {
        if self.binary.is_none() {
            return Err(self.refused(what));
        }
        Ok(())
    }

    fn refused(&self, what: &'static str) -> HarnessError {
        HarnessError::StopFailed {
            server: "nats-server",
            pid: self.pid,
            reason: format!(
                "{what}: this is the shared server on 127.0.0.1:{SHARED_PORT}, which the tests \
                 do not touch (install nats-server to run this test)"
            ),
        }
    }

    fn shutdown(&mut self) -> Result<()> {
        let stderr = self.root.join("stderr.log");
        process::shut_down(
            "nats-server",
            self.pid,
            self.process.take(),
            self.dir.take(),
            &[Path::new(&stderr)],
        )
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Starts `nats-server` on `port` in `root` and waits until it is ready; on failure, whether
/// the port was taken, and the error.
fn spawn_ready(
    binary: &Path,
    root: &Path,
    port: u16,
    options: &[OsString],
) -> std::result::Result<ServerProcess, (bool, HarnessError)> {
    let stdout = root.join("stdout.log");
    let stderr = root.join("stderr.log");
    let store = root.join("jetstream");
    let port_text = port.to_string();
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("-js"),
        OsStr::new("-p"),
        OsStr::new(&port_text),
        OsStr::new("-sd"),
        store.as_os_str(),
        OsStr::new("-a"),
        OsStr::new("127.0.0.1"),
    ];
    args.extend(options.iter().map(OsString::as_os_str));
    let mut server = ServerProcess::spawn("nats-server", binary, &args, root, &stdout, &stderr)
        .map_err(|e| (false, e))?;
    let logs = [stdout.as_path(), stderr.as_path()];
    let deadline = Instant::now() + process::START_DEADLINE;
    let outcome = loop {
        match server.poll_exit() {
            Ok(Some(status)) => break Err(format!("it exited ({status}) before it was ready")),
            Ok(None) => {}
            Err(e) => break Err(e.to_string()),
        }
        if process::mentions_port_taken(&logs) {
            break Err(format!("port {port} is already in use"));
        }
        if jetstream_answers(port) {
            break Ok(());
        }
        if Instant::now() >= deadline {
            break Err(format!(
                "no JetStream INFO on port {port} after {:?}",
                process::START_DEADLINE
            ));
        }
        std::thread::sleep(process::POLL_INTERVAL);
    };
    match outcome {
        Ok(()) => {
            tracing::debug!(pid = server.pid(), port, "nats-server ready");
            Ok(server)
        }
        Err(reason) => {
            let in_use = process::mentions_port_taken(&logs);
            let _ = server.terminate(process::STOP_GRACE);
            Err((
                in_use,
                HarnessError::StartFailed {
                    server: "nats-server",
                    reason,
                    config: root.to_path_buf(),
                    logs: process::log_tails(&logs),
                },
            ))
        }
    }
}

/// Whether a NATS server with JetStream greets on 127.0.0.1:`port` (within half a second):
/// its first line is `INFO {...}` with `"jetstream":true`.
pub fn nats_answers(port: u16) -> bool {
    jetstream_answers(port)
}

fn jetstream_answers(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr.into(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4096];
    let mut read = 0;
    while read < buf.len() {
        match stream.read(&mut buf[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
        if buf[..read].contains(&b'\n') {
            break;
        }
    }
    let greeting = String::from_utf8_lossy(&buf[..read]);
    greeting.starts_with("INFO ") && greeting.contains("\"jetstream\":true")
}

/// Writes a CA, a server certificate for `127.0.0.1` and `localhost` and a client certificate,
/// both signed by the CA, as PEM files into `root`.
fn write_certificates(root: &Path) -> Result<NatsTlsFiles> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let failed = |reason: String| HarnessError::StartFailed {
        server: "nats-server",
        reason: format!("cannot make its TLS certificates: {reason}"),
        config: root.to_path_buf(),
        logs: String::new(),
    };
    let made = (|| -> std::result::Result<[(String, String); 3], rcgen::Error> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "cache-purge-hooks test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server = server.signed_by(&server_key, &ca)?;
        let mut client = CertificateParams::new(vec!["cache-purge-client".to_owned()])?;
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate()?;
        let client = client.signed_by(&client_key, &ca)?;
        Ok([
            (ca.pem(), String::new()),
            (server.pem(), server_key.serialize_pem()),
            (client.pem(), client_key.serialize_pem()),
        ])
    })()
    .map_err(|e| failed(e.to_string()))?;
    let [(ca, _), (server, server_key), (client, client_key)] = made;
    let files = NatsTlsFiles {
        ca_file: root.join("ca.pem"),
        client_cert_file: root.join("client.pem"),
        client_key_file: root.join("client-key.pem"),
    };
    for (path, text) in [
        (files.ca_file.clone(), ca),
        (root.join("server.pem"), server),
        (root.join("server-key.pem"), server_key),
        (files.client_cert_file.clone(), client),
        (files.client_key_file.clone(), client_key),
    ] {
        std::fs::write(&path, text).map_err(|source| HarnessError::Io {
            context: format!("writing {}", path.display()),
            source,
        })?;
    }
    Ok(files)
}

/// A random byte from the clock and a counter (the harness has no RNG dependency).
fn fastrand_u8() -> u8 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    // splitmix64
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) as u8
}
