//! [`NatsBackend`]: publish and wait for the stream's ack.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use async_nats::rustls;
use tokio::sync::OnceCell;

use super::settings::{NatsSettings, StreamRetention, StreamStorage};
use super::wire;
use crate::backend::{Backend, Capabilities, Cause, Failures, PurgeError, SetupError};
use crate::target::Target;

/// Publishes each batch to a JetStream stream and waits for the stream's ack.
///
/// Connects (and creates or checks the stream) on the first purge, so that building a purger
/// never waits for NATS; until that works, every purge fails as
/// [`Cause::Unreachable`] (transient).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use cache_purge_hooks_engine::backend::NatsBackend;
/// use cache_purge_hooks_engine::settings::NatsSettings;
/// use cache_purge_hooks_engine::Purger;
///
/// let mut settings = NatsSettings::default();
/// settings.servers = vec!["127.0.0.1:4222".parse()?];
/// let purger = Purger::builder().backend("fleet", NatsBackend::new(&settings)?).build()?;
/// purger.purge([cache_purge_hooks_engine::Target::url("/posts/a")?]).await;
/// # Ok(())
/// # }
/// ```
pub struct NatsBackend {
    settings: NatsSettings,
    subject: String,
    context: OnceCell<jetstream::Context>,
}

impl std::fmt::Debug for NatsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBackend")
            .field("servers", &self.settings.servers_or_default())
            .field("stream", &self.settings.stream.as_str())
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl NatsBackend {
    /// A backend with these settings (checked again: see [`NatsSettings::check`]); the files
    /// of `auth` and `tls` must be readable.
    pub fn new(settings: &NatsSettings) -> Result<Self, SetupError> {
        settings.check()?;
        settings.auth.check_files()?;
        if let Some(tls) = &settings.tls {
            tls.check_files()?;
        }
        Ok(Self {
            settings: settings.clone(),
            subject: settings.subject(),
            context: OnceCell::new(),
        })
    }

    /// The subject it publishes to: `<subject_prefix>.<group>`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    async fn context(&self) -> Result<&jetstream::Context, PurgeError> {
        self.context
            .get_or_try_init(|| async {
                let client = connect(&self.settings, "cache-purge-hooks publisher").await?;
                let mut context = jetstream::new(client);
                context.set_timeout(self.settings.timeout);
                ensure_stream(&context, &self.settings).await?;
                Ok(context)
            })
            .await
    }
}

/// A NATS client for these settings' servers, authenticated and over TLS as their `auth` and
/// `tls` say, connected within `timeout` (reconnecting on its own afterwards), named `name` in
/// the server's connection list. A failure is [`Cause::Unreachable`], [`Cause::Timeout`],
/// [`Cause::Authentication`] (refused credentials; a TLS handshake that fails is
/// `Unreachable`, with a hint about the `tls` table) or [`Cause::Misconfigured`] (a file that
/// cannot be read).
pub async fn connect(
    settings: &NatsSettings,
    name: &str,
) -> Result<async_nats::Client, PurgeError> {
    let servers: Vec<String> = settings
        .servers_or_default()
        .iter()
        .map(|s| format!("nats://{s}"))
        .collect();
    let shown = servers.join(", ");
    let mut addrs = Vec::with_capacity(servers.len());
    for s in &servers {
        addrs
            .push(s.parse::<async_nats::ServerAddr>().map_err(|e| {
                PurgeError::new(Cause::Misconfigured, format!("server `{s}`: {e}"))
            })?);
    }
    let options = connect_options(settings, name)
        .await
        .map_err(|e| e.on_server(shown.clone()))?;
    options.connect(addrs).await.map_err(|e| {
        use async_nats::ConnectErrorKind as K;
        let (cause, hint) = match e.kind() {
            K::TimedOut => (Cause::Timeout, ""),
            K::Authentication | K::AuthorizationViolation => (
                Cause::Authentication,
                if settings.auth.is_none() {
                    " (the server wants credentials: set the `auth` table)"
                } else {
                    " (check the `auth` table against the server's authorization)"
                },
            ),
            // Transient: a handshake can fail for a while (a certificate being rotated, a
            // server restarting behind a balancer); the outbox keeps the rows meanwhile.
            _ if tls_refused(&e) => (
                Cause::Unreachable,
                " (check the `tls` table: the CA in `ca_file` must have signed the server's certificate, for the name in `servers`)",
            ),
            K::ServerParse => (Cause::Misconfigured, ""),
            _ => (Cause::Unreachable, ""),
        };
        PurgeError::new(cause, format!("cannot connect to NATS at {shown}: {e}{hint}"))
            .on_server(shown.clone())
    })
}

/// Whether the connection failed in the TLS handshake (an unknown CA, a refused client
/// certificate): async-nats reports those as I/O errors carrying rustls' error, or as `Tls`.
fn tls_refused(e: &async_nats::ConnectError) -> bool {
    if e.kind() == async_nats::ConnectErrorKind::Tls {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The client options of `auth` and `tls`; a credentials file is read here.
async fn connect_options(
    settings: &NatsSettings,
    name: &str,
) -> Result<async_nats::ConnectOptions, PurgeError> {
    let auth = &settings.auth;
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(settings.timeout);
    if let Some(token) = &auth.token {
        options = options.token(token.expose().to_owned());
    }
    if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(seed) = &auth.nkey_seed {
        options = options.nkey(seed.expose().to_owned());
    }
    if let Some(path) = &auth.credentials_file {
        options = options.credentials_file(path).await.map_err(|e| {
            PurgeError::new(
                Cause::Misconfigured,
                format!(
                    "auth.credentials_file `{}`: {e} (expected a .creds file from `nsc generate creds`)",
                    path.display()
                ),
            )
        })?;
    }
    // Always our own client config, also without the `tls` table (a server may require TLS
    // anyway): async-nats would otherwise build one on rustls' process-wide provider, which
    // panics in an app that compiles in both of rustls' providers.
    options = options.tls_client_config(tls_client_config(settings.tls.as_ref())?);
    if let Some(tls) = &settings.tls {
        options = options.require_tls(true);
        if tls.handshake_first {
            options = options.tls_first();
        }
    }
    Ok(options)
}

/// The rustls client config of `tls` (the system's roots without it), on aws-lc-rs.
fn tls_client_config(
    tls: Option<&super::settings::NatsTls>,
) -> Result<rustls::ClientConfig, PurgeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |setting: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        PurgeError::new(
            Cause::Misconfigured,
            format!("tls.{setting} `{}`: {e}", path.display()),
        )
    };
    let mut roots = rustls::RootCertStore::empty();
    match tls.and_then(|t| t.ca_file.as_deref()) {
        Some(ca) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| bad("ca_file", ca, &e))?;
            if certs.is_empty() {
                return Err(bad("ca_file", ca, &"no PEM certificate in it"));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad("ca_file", ca, &e))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PurgeError::new(Cause::Misconfigured, format!("TLS: {e}")))?
        .with_root_certificates(roots);
    match tls.and_then(|t| t.cert_file.as_deref().zip(t.key_file.as_deref())) {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| bad("cert_file", cert, &e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key_file", key, &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("cert_file", cert, &e))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The stream these settings describe: `stream`, taking `<subject_prefix>.>`, with their
/// retention, max age, replicas and storage.
pub fn stream_config(settings: &NatsSettings) -> stream::Config {
    stream::Config {
        name: settings.stream.as_str().to_owned(),
        subjects: vec![settings.subject_prefix.wildcard()],
        retention: match settings.retention {
            StreamRetention::Interest => stream::RetentionPolicy::Interest,
            _ => stream::RetentionPolicy::Limits,
        },
        storage: match settings.storage {
            StreamStorage::Memory => stream::StorageType::Memory,
            _ => stream::StorageType::File,
        },
        max_age: settings.max_age,
        num_replicas: settings.replicas.get(),
        description: Some("cache purges of cache-purge-hooks, one message per batch".to_owned()),
        ..Default::default()
    }
}

/// Creates the stream (with `create_stream`) or checks the existing one against the settings.
async fn ensure_stream(
    context: &jetstream::Context,
    settings: &NatsSettings,
) -> Result<(), PurgeError> {
    let wanted = stream_config(settings);
    let name = settings.stream.as_str();
    let existing = match context.get_stream(name).await {
        Ok(mut stream) => Some(
            stream
                .info()
                .await
                .map_err(|e| jetstream_error(format!("cannot read stream `{name}`: {e}")))?
                .config
                .clone(),
        ),
        Err(e) => match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                None
            }
            _ => {
                return Err(jetstream_error(format!(
                    "cannot look up stream `{name}`: {e}"
                )));
            }
        },
    };
    match existing {
        Some(config) => {
            let differences = stream_differences(&config, &wanted);
            if differences.is_empty() {
                Ok(())
            } else {
                Err(PurgeError::new(
                    Cause::Misconfigured,
                    format!(
                        "stream `{name}` exists with other settings: {}; change the stream (nats stream edit) or the settings",
                        differences.join(", ")
                    ),
                ))
            }
        }
        None if settings.create_stream => {
            context
                .create_stream(wanted)
                .await
                .map_err(|e| jetstream_error(format!("cannot create stream `{name}`: {e}")))?;
            tracing::info!(target: "cache_purge_hooks", stream = name, "created the JetStream stream");
            Ok(())
        }
        None => Err(PurgeError::new(
            Cause::Unavailable,
            format!("stream `{name}` does not exist (create_stream = false): create it first"),
        )),
    }
}

/// How an existing stream's settings (`have`) differ from the wanted ones
/// ([`stream_config`]), in words: empty when the stream is right.
pub fn stream_differences(have: &stream::Config, want: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    for subject in &want.subjects {
        if !have.subjects.iter().any(|s| s == subject) {
            out.push(format!("subjects {:?} lack `{subject}`", have.subjects));
        }
    }
    if have.retention != want.retention {
        out.push(format!(
            "retention {:?}, not {:?}",
            have.retention, want.retention
        ));
    }
    if have.max_age != want.max_age {
        out.push(format!(
            "max_age {}, not {}",
            humantime::format_duration(have.max_age),
            humantime::format_duration(want.max_age)
        ));
    }
    if have.num_replicas != want.num_replicas {
        out.push(format!(
            "replicas {}, not {}",
            have.num_replicas, want.num_replicas
        ));
    }
    if have.storage != want.storage {
        out.push(format!(
            "storage {:?}, not {:?}",
            have.storage, want.storage
        ));
    }
    out
}

/// A JetStream API call failed: transient (the server may be restarting, JetStream may be
/// electing a leader).
fn jetstream_error(message: String) -> PurgeError {
    PurgeError::new(Cause::Unavailable, message)
}

#[async_trait::async_trait]
impl Backend for NatsBackend {
    /// Every kind: the agents' own backends decide what they can purge.
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    fn max_batch(&self) -> usize {
        self.settings.max_batch.get().min(wire::MAX_TARGETS)
    }

    fn max_concurrency(&self) -> usize {
        self.settings.concurrency.get()
    }

    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        let context = self.context().await?;
        // One message per group, in the order of the groups' first targets.
        let mut by_group: Vec<(String, Vec<Target>)> = Vec::new();
        for target in batch {
            let subject = if self.settings.host_groups.is_empty() {
                self.subject.clone()
            } else {
                self.settings
                    .subject_prefix
                    .subject(self.settings.group_of(target))
            };
            match by_group.iter_mut().find(|(s, _)| *s == subject) {
                Some((_, targets)) => targets.push(target.clone()),
                None => by_group.push((subject, vec![target.clone()])),
            }
        }
        // A message larger than the server takes is split in halves until each fits.
        let max_payload = match context.client().server_info().max_payload {
            0 => 1024 * 1024,
            n => n,
        };
        let mut failures = Failures::new(batch);
        let mut work: Vec<(String, Vec<Target>)> = by_group.into_iter().rev().collect();
        while let Some((subject, targets)) = work.pop() {
            let payload = wire::encode(&targets);
            if payload.len() > max_payload && targets.len() > 1 {
                let mut first = targets;
                let second = first.split_off(first.len() / 2);
                work.push((subject.clone(), second));
                work.push((subject, first));
                continue;
            }
            if let Err(e) = self
                .publish(context, &subject, payload, targets.len())
                .await
            {
                failures.push(e.only(targets));
            }
        }
        failures.into_result()
    }
}

impl NatsBackend {
    /// Publishes one message and waits for the stream's ack.
    async fn publish(
        &self,
        context: &jetstream::Context,
        subject: &str,
        payload: Vec<u8>,
        targets: usize,
    ) -> Result<(), PurgeError> {
        let stream = self.settings.stream.as_str();
        let on = |e: PurgeError| e.on_server(format!("stream {stream}"));
        let ack = context
            .publish(subject.to_owned(), payload.into())
            .await
            .map_err(|e| on(publish_error(e.kind(), &e.to_string())))?;
        let ack = tokio::time::timeout(self.settings.timeout + Duration::from_secs(1), ack)
            .await
            .map_err(|_| {
                on(PurgeError::new(
                    Cause::Timeout,
                    format!("no ack from the stream within {:?}", self.settings.timeout),
                ))
            })?
            .map_err(|e| on(publish_error(e.kind(), &e.to_string())))?;
        if ack.stream != stream {
            return Err(on(PurgeError::new(
                Cause::Misconfigured,
                format!(
                    "subject `{subject}` was stored by stream `{}`, not `{stream}`",
                    ack.stream
                ),
            )));
        }
        tracing::debug!(target: "cache_purge_hooks", stream, subject, sequence = ack.sequence, targets, "published");
        Ok(())
    }
}

fn publish_error(kind: PublishErrorKind, text: &str) -> PurgeError {
    let cause = match kind {
        PublishErrorKind::TimedOut => Cause::Timeout,
        PublishErrorKind::BrokenPipe => Cause::ConnectionLost,
        PublishErrorKind::StreamNotFound => Cause::Unavailable,
        PublishErrorKind::MaxPayloadExceeded => Cause::Misconfigured,
        _ => Cause::Unavailable,
    };
    PurgeError::new(cause, format!("publish not acked: {text}"))
}
