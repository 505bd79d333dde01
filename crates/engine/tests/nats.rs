//! The nats backend against a real `nats-server -js` (started per test by
//! `cache-purge-hooks-testing` on a free loopback port): a batch is one message on the
//! group's subject, a publish counts only once the stream has acked it, the stream is created
//! with the settings' retention, max age and replicas or checked against them.
#![cfg(feature = "nats")]

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use cache_purge_hooks_engine::attempt::History;
use cache_purge_hooks_engine::backend::nats::wire;
use cache_purge_hooks_engine::backend::{Backend, Cause, NatsBackend};
use cache_purge_hooks_engine::retry::Verdict;
use cache_purge_hooks_engine::settings::{NatsSettings, NatsTls, StreamRetention};
use cache_purge_hooks_engine::{Purger, Target};
use cache_purge_hooks_testing::{Nats, NatsConfig};
use futures::StreamExt;

fn settings(nats: &Nats) -> NatsSettings {
    let mut s = NatsSettings::default();
    s.servers = vec![nats.addr().parse().unwrap()];
    s.stream = Nats::unique_name("CPH_TEST_").parse().unwrap();
    s.subject_prefix = Nats::unique_name("cph-test-").parse().unwrap();
    s.timeout = Duration::from_secs(1);
    s
}

fn targets(list: &[&str]) -> Vec<Target> {
    list.iter().map(|t| t.parse().unwrap()).collect()
}

/// Every message on the stream, decoded, with its subject.
async fn messages(nats: &Nats, stream: &str) -> Vec<(String, Vec<Target>)> {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream(stream).await.unwrap();
    let consumer = stream
        .create_consumer(consumer::pull::Config::default())
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(100)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.unwrap();
        let decoded = wire::decode(&message.payload).unwrap();
        out.push((message.subject.to_string(), decoded.targets));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_becomes_one_acked_message_on_the_groups_subject() {
    let nats = Nats::start().await.unwrap();
    let mut s = settings(&nats);
    s.group = "blog".parse().unwrap();
    let purger = Purger::builder()
        .backend("fleet", NatsBackend::new(&s).unwrap())
        .build()
        .unwrap();
    let batch = targets(&["url /posts/a", "prefix /blog/", "tag post-1", "everything"]);
    let report = purger
        .attempt("fleet", batch.clone(), History::new())
        .await
        .unwrap();
    assert!(report.is_delivered(), "{report:?}");

    let got = messages(&nats, s.stream.as_str()).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, format!("{}.blog", s.subject_prefix));
    let mut published = got[0].1.clone();
    published.sort();
    let mut expected = batch;
    expected.sort();
    assert_eq!(published, expected);
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_is_created_with_the_settings_retention_max_age_and_replicas() {
    let nats = Nats::start().await.unwrap();
    let mut s = settings(&nats);
    s.retention = StreamRetention::Interest;
    s.max_age = Duration::from_secs(3600);
    let backend = NatsBackend::new(&s).unwrap();
    backend.purge(&targets(&["url /a"])).await.unwrap();

    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut stream = js.get_stream(s.stream.as_str()).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.retention, stream::RetentionPolicy::Interest);
    assert_eq!(config.max_age, Duration::from_secs(3600));
    assert_eq!(config.num_replicas, 1);
    assert_eq!(config.subjects, [format!("{}.>", s.subject_prefix)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_stream_with_other_settings_is_refused_and_left_alone() {
    let nats = Nats::start().await.unwrap();
    let s = settings(&nats);
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut other = cache_purge_hooks_engine::backend::nats::stream_config(&s);
    other.max_age = Duration::from_secs(60);
    js.create_stream(other).await.unwrap();

    let err = NatsBackend::new(&s)
        .unwrap()
        .purge(&targets(&["url /a"]))
        .await
        .unwrap_err();
    assert_eq!(*err.cause(), Cause::Misconfigured, "{err}");
    assert!(err.to_string().contains("max_age 1m, not 1day"), "{err}");
    let mut stream = js.get_stream(s.stream.as_str()).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().config.max_age,
        Duration::from_secs(60)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_stream_without_create_stream_is_a_transient_failure() {
    let nats = Nats::start().await.unwrap();
    let mut s = settings(&nats);
    s.create_stream = false;
    let err = NatsBackend::new(&s)
        .unwrap()
        .purge(&targets(&["url /a"]))
        .await
        .unwrap_err();
    assert!(err.cause().is_transient(), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_a_transient_failure() {
    let mut s = NatsSettings::default();
    s.servers = vec![cache_purge_hooks_testing::refused_addr().parse().unwrap()];
    s.timeout = Duration::from_millis(500);
    let err = NatsBackend::new(&s)
        .unwrap()
        .purge(&targets(&["url /a"]))
        .await
        .unwrap_err();
    assert_eq!(*err.cause(), Cause::Unreachable, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_not_acked_while_nats_is_down_is_retried_and_lands_once_it_is_back() {
    let mut nats = Nats::start().await.unwrap();
    if nats.is_shared() {
        panic!("this test restarts its own nats-server: install nats-server");
    }
    let s = settings(&nats);
    let purger = Purger::builder()
        .backend("fleet", NatsBackend::new(&s).unwrap())
        .build()
        .unwrap();
    let first = purger
        .attempt("fleet", targets(&["url /before"]), History::new())
        .await
        .unwrap();
    assert!(first.is_delivered(), "{first:?}");

    nats.kill_server().unwrap();
    let down = purger
        .attempt("fleet", targets(&["url /during"]), History::new())
        .await
        .unwrap();
    assert!(
        matches!(down.verdict(), Some(Verdict::Retry { .. })),
        "{down:?}"
    );
    assert!(down.error().unwrap().cause().is_transient());

    nats.restart().unwrap();
    // The client reconnects on its own; the retry lands (the outbox worker does the same).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let again = purger
            .attempt(
                "fleet",
                targets(&["url /during"]),
                History::after(1, std::time::SystemTime::now()),
            )
            .await
            .unwrap();
        if again.is_delivered() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{again:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got: Vec<Vec<Target>> = messages(&nats, s.stream.as_str())
        .await
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    // At least once: the publish the stream did not ack in time was buffered by the client
    // and may land as well when it reconnects (a duplicate purge, never a lost one).
    assert_eq!(got[0], targets(&["url /before"]));
    assert!(got.len() >= 2, "{got:?}");
    assert!(
        got[1..].iter().all(|t| *t == targets(&["url /during"])),
        "{got:?}"
    );
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_larger_than_the_servers_max_payload_is_split_into_messages_that_fit() {
    let nats = Nats::start().await.unwrap();
    let mut s = settings(&nats);
    s.max_batch = 1000.try_into().unwrap();
    let long = "x".repeat(2000);
    let batch: Vec<Target> = (0..700)
        .map(|i| Target::url(&format!("/{long}/{i}")).unwrap())
        .collect();
    // About 1.4 MB of targets, past nats-server's default max_payload of 1 MB.
    NatsBackend::new(&s).unwrap().purge(&batch).await.unwrap();

    let got = messages(&nats, s.stream.as_str()).await;
    assert!(got.len() >= 2, "{} messages", got.len());
    let mut published: Vec<Target> = got.into_iter().flat_map(|(_, t)| t).collect();
    published.sort();
    let mut expected = batch;
    expected.sort();
    assert_eq!(published, expected, "every target once");
}

/// The number of messages on `stream`, read with an authenticated client.
async fn stream_messages(client: async_nats::Client, stream: &str) -> u64 {
    let js = jetstream::new(client);
    let mut stream = js.get_stream(stream).await.unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_wanting_a_token_gets_it_and_a_missing_or_wrong_one_is_an_authentication_failure()
{
    let nats = Nats::start_with(NatsConfig::token("s3cret-token"))
        .await
        .unwrap();
    let mut s = settings(&nats);
    let err = NatsBackend::new(&s)
        .unwrap()
        .purge(&targets(&["url /a"]))
        .await
        .unwrap_err();
    assert_eq!(*err.cause(), Cause::Authentication, "{err}");
    assert!(err.to_string().contains("set the `auth` table"), "{err}");

    s.auth.token = Some("wrong".parse().unwrap());
    let err = NatsBackend::new(&s)
        .unwrap()
        .purge(&targets(&["url /a"]))
        .await
        .unwrap_err();
    assert_eq!(*err.cause(), Cause::Authentication, "{err}");
    assert!(err.to_string().contains("check the `auth` table"), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "the token is quoted: {err}"
    );

    s.auth.token = Some("s3cret-token".parse().unwrap());
    let backend = NatsBackend::new(&s).unwrap();
    assert!(!format!("{backend:?}").contains("s3cret"), "{backend:?}");
    backend.purge(&targets(&["url /a"])).await.unwrap();
    let client = async_nats::ConnectOptions::with_token("s3cret-token".to_owned())
        .connect(nats.url())
        .await
        .unwrap();
    assert_eq!(stream_messages(client, s.stream.as_str()).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_wanting_a_user_and_password_gets_them_and_a_wrong_password_is_refused() {
    let nats = Nats::start_with(NatsConfig::user("app", "pa55word"))
        .await
        .unwrap();
    let mut s = settings(&nats);
    s.auth.user = Some("app".to_owned());
    s.auth.password = Some("not-it".parse().unwrap());
    let err = NatsBackend::new(&s)
        .unwrap()
        .purge(&targets(&["url /a"]))
        .await
        .unwrap_err();
    assert_eq!(*err.cause(), Cause::Authentication, "{err}");

    s.auth.password = Some("pa55word".parse().unwrap());
    NatsBackend::new(&s)
        .unwrap()
        .purge(&targets(&["url /a", "url /b"]))
        .await
        .unwrap();
    let client =
        async_nats::ConnectOptions::with_user_and_password("app".into(), "pa55word".into())
            .connect(nats.url())
            .await
            .unwrap();
    assert_eq!(stream_messages(client, s.stream.as_str()).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_a_publisher_with_the_ca_and_a_client_certificate_publishes_and_others_are_refused()
 {
    let nats = Nats::start_with(NatsConfig::default().with_client_certificates())
        .await
        .unwrap();
    let files = nats.tls().unwrap().clone();
    let mut s = settings(&nats);

    // Without the `tls` table: the server requires TLS, the system's roots do not know its CA.
    let err = NatsBackend::new(&s)
        .unwrap()
        .purge(&targets(&["url /a"]))
        .await
        .unwrap_err();
    assert_eq!(*err.cause(), Cause::Unreachable, "{err}");
    assert!(err.to_string().contains("`tls` table"), "{err}");

    // The CA, but no client certificate: the server refuses the handshake.
    let mut tls = NatsTls::default();
    tls.ca_file = Some(files.ca_file.clone());
    s.tls = Some(tls.clone());
    let refused = NatsBackend::new(&s)
        .unwrap()
        .purge(&targets(&["url /a"]))
        .await;
    assert!(refused.is_err(), "published without a client certificate");

    tls.cert_file = Some(files.client_cert_file.clone());
    tls.key_file = Some(files.client_key_file.clone());
    s.tls = Some(tls);
    NatsBackend::new(&s)
        .unwrap()
        .purge(&targets(&["url /a"]))
        .await
        .unwrap();
    let client = cache_purge_hooks_engine::backend::nats::connect(&s, "test reader")
        .await
        .unwrap();
    assert_eq!(stream_messages(client, s.stream.as_str()).await, 1);
}

#[test]
fn credential_and_certificate_files_that_cannot_be_read_fail_when_the_backend_is_built() {
    let mut s = NatsSettings::default();
    s.auth.credentials_file = Some("/nonexistent/app.creds".into());
    let err = NatsBackend::new(&s).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read auth.credentials_file `/nonexistent/app.creds`"),
        "{err}"
    );

    let mut s = NatsSettings::default();
    let mut tls = NatsTls::default();
    tls.ca_file = Some("/nonexistent/ca.pem".into());
    s.tls = Some(tls);
    let err = NatsBackend::new(&s).unwrap_err();
    assert!(err.to_string().contains("tls.ca_file"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_listing_a_user_nkey_accepts_its_seed_and_refuses_another() {
    let nats = Nats::start_with(NatsConfig::nkey()).await.unwrap();
    let seed = nats.nkey_seed().unwrap().to_owned();
    let mut s = settings(&nats);
    let other = nkeys::KeyPair::new_user().seed().unwrap();
    s.auth.nkey_seed = Some(other.parse().unwrap());
    let err = NatsBackend::new(&s)
        .unwrap()
        .purge(&targets(&["url /a"]))
        .await
        .unwrap_err();
    assert_eq!(*err.cause(), Cause::Authentication, "{err}");

    s.auth.nkey_seed = Some(seed.parse().unwrap());
    NatsBackend::new(&s)
        .unwrap()
        .purge(&targets(&["url /a"]))
        .await
        .unwrap();
    let client = cache_purge_hooks_engine::backend::nats::connect(&s, "test reader")
        .await
        .unwrap();
    assert_eq!(stream_messages(client, s.stream.as_str()).await, 1);
}
