//! [`Agent`]: consume the stream with the node's durable consumer, purge through the engine,
//! ack only what was purged.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, AckKind, consumer, kv, stream};
use futures::StreamExt;

use super::settings::{AgentSettings, NodeName, StartFrom, WhenAway};
use super::state::{NodeState, STATE_VERSION, millis};
use crate::attempt::History;
use crate::backend::nats::wire;
use crate::retry::Verdict;
use crate::settings::{BackendSettings, Settings};
use crate::target::Target;
use crate::{Delivery, Purger};

/// Messages asked for per pull request.
const PULL_BATCH: usize = 64;
/// How long one pull request waits for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// How long the dead-letter stream keeps a message.
const DEAD_LETTER_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The wait between two attempts to reach NATS or find the stream.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// An agent could not be set up or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The settings have no `[agent]` node name, and none was given.
    #[error("the agent needs a node name: set agent.node (or pass --node)")]
    NoNode,
    /// A backend of the settings publishes to the stream: an agent would feed its own input.
    #[error(
        "backend `{0}` is kind = \"nats\": an agent's backends are the node's own caches (nginx, varnish), never the stream it reads"
    )]
    NatsBackend(String),
    /// The settings have no backend for the agent to purge with.
    #[error("the agent has no backend to purge: add the node's caches as [backends.NAME]")]
    NoBackend,
    /// The purger could not be built from the settings.
    #[error(transparent)]
    Build(#[from] crate::BuildError),
    /// The agent's own NATS settings cannot be used (a credentials or certificate file that
    /// cannot be read, a rule across keys of `[agent]` built in code).
    #[error("agent: {0}")]
    Setup(#[from] crate::backend::SetupError),
}

/// What an agent did before it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentSummary {
    /// Messages purged and acked.
    pub purged: u64,
    /// Failed attempts handed back for redelivery.
    pub retried: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Whether it purged everything because it had been away too long.
    pub purged_everything: bool,
    /// The highest stream sequence purged and acked.
    pub applied_sequence: u64,
}

/// One cache node's agent: reads its groups' purges from the stream with the durable consumer
/// `cache-purge-agent-<node>`, purges each message's targets on every local backend through
/// the engine ([`Purger::attempt`]), and acks the message only when every backend purged it.
/// A transient failure hands the message back for redelivery after the retry policy's
/// backoff; a permanent one, giving up, and a message that is not a valid purge
/// ([`wire`]) go to the dead-letter stream (`<stream>_DEAD`, subject
/// `<subject_prefix>-dead.<node>`) and are terminated, never widened.
///
/// See docs/fleet.md for the guarantees.
pub struct Agent {
    settings: AgentSettings,
    node: NodeName,
    purger: Purger,
    backends: Vec<String>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.node)
            .field("backends", &self.backends)
            .finish_non_exhaustive()
    }
}

/// Why [`Agent::consume`] returned.
enum Ended {
    /// The agent was told to stop.
    Stopped,
    /// The node's consumer was deleted from the stream: start again.
    ConsumerLost,
}

/// What [`Agent::process`] did with one message.
enum Outcome {
    /// Not this node's (acked), or not a stream message.
    Skipped,
    /// Handed back at once because the agent is stopping.
    HandedBack,
    /// Purged on every backend and acked (the ack confirmed).
    Purged { sequence: u64 },
    /// Purged, but the server did not confirm the ack: it may come again.
    Unconfirmed { message: String },
    /// Handed back for redelivery after the backoff; the backends' errors.
    Retried { errors: Vec<String> },
    /// Stored on the dead-letter stream and terminated.
    DeadLettered { sequence: u64, reason: String },
}

/// Everything the running agent holds.
struct Running {
    js: jetstream::Context,
    stream: stream::Stream,
    consumer: consumer::Consumer<consumer::pull::Config>,
    kv: Option<kv::Store>,
    state: NodeState,
    started: SystemTime,
    /// Sequences taken from the stream and not done yet (being purged, or handed back).
    unfinished: BTreeSet<u64>,
    /// The highest sequence done.
    highest_done: u64,
    /// Sequences being purged now.
    in_hand: BTreeSet<u64>,
}

impl Agent {
    /// An agent with the settings' `[agent]` table (`node` replacing its `node` when given)
    /// and its backends (which must not be `kind = "nats"`), on the current tokio runtime.
    pub fn from_settings(settings: &Settings, node: Option<NodeName>) -> Result<Self, AgentError> {
        if let Some((name, _)) = settings
            .backends
            .iter()
            .find(|(_, b)| matches!(b.settings, BackendSettings::Nats(_)))
        {
            return Err(AgentError::NatsBackend(name.clone()));
        }
        let mut agent = settings.agent.clone().unwrap_or_default();
        if node.is_some() {
            agent.node = node;
        }
        let purger = crate::PurgerBuilder::from_settings(settings)?
            .delivery(Delivery::Immediate)
            .build()?;
        Self::new(agent, purger)
    }

    /// An agent with these settings purging through this purger's backends.
    pub fn new(settings: AgentSettings, purger: Purger) -> Result<Self, AgentError> {
        let node = settings.node.clone().ok_or(AgentError::NoNode)?;
        settings.check().map_err(crate::backend::SetupError::from)?;
        settings.auth.check_files()?;
        if let Some(tls) = &settings.tls {
            tls.check_files()?;
        }
        let backends: Vec<String> = purger
            .backend_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if backends.is_empty() {
            return Err(AgentError::NoBackend);
        }
        Ok(Self {
            settings,
            node,
            purger,
            backends,
        })
    }

    /// The durable consumer's name: `cache-purge-agent-<node>`.
    pub fn consumer_name(&self) -> String {
        consumer_name(&self.node)
    }

    /// Runs until `shutdown` completes (SIGTERM, say): then it finishes the message in hand,
    /// hands the rest of its pull back for immediate redelivery, writes its state as
    /// `stopped` and returns. Until NATS and the stream can be reached it keeps trying (and
    /// says so in the log); failures while running are reported in the node's state and
    /// retried, never fatal.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<AgentSummary, AgentError> {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let stopper = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
            // Keep the sender alive so that `changed` does not fire again.
            std::future::pending::<()>().await;
        });
        let mut summary = AgentSummary::default();
        let mut running = self.start(&mut stop_rx).await;
        while let Some(mut current) = running.take() {
            match self.consume(&mut current, &mut stop_rx, &mut summary).await {
                Ended::Stopped => {
                    self.write_state(&mut current, "stopped").await;
                    let _ = current.js.client().flush().await;
                }
                Ended::ConsumerLost => {
                    // Deleted under a running agent (by an operator, or a stream recreated):
                    // a new one, from after the last purge the node's state records.
                    let message = format!(
                        "consumer `{}` was deleted while the agent ran: creating it again after sequence {}",
                        self.consumer_name(),
                        current.state.applied_sequence
                    );
                    self.failed(&mut current, message);
                    self.write_state(&mut current, "running").await;
                    let _ = current.js.client().flush().await;
                    drop(current);
                    running = self.start(&mut stop_rx).await;
                }
            }
        }
        stopper.abort();
        let _ = self.purger.shutdown(Duration::from_secs(5)).await;
        tracing::info!(target: "cache_purge_hooks", node = %self.node, purged = summary.purged, dead_lettered = summary.dead_lettered, "agent stopped");
        Ok(summary)
    }

    fn filter_subject(&self) -> String {
        match self.settings.groups.as_slice() {
            [one] => self.settings.subject_prefix.subject(one),
            _ => self.settings.subject_prefix.wildcard(),
        }
    }

    /// Connects, finds the stream, the state bucket and the consumer (creating it where the
    /// node has none), and applies the away-too-long safety. `None` when stopped meanwhile.
    async fn start(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> Option<Running> {
        let started = SystemTime::now();
        let name = format!("cache-purge agent {}", self.node);
        let mut state = self.fresh_state(started);
        loop {
            if *stop.borrow() {
                return None;
            }
            match self.try_start(&name, started, &mut state).await {
                Ok(running) => return Some(running),
                Err(message) => {
                    tracing::warn!(target: "cache_purge_hooks", node = %self.node, "{message}; trying again in {RECONNECT_PAUSE:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
                        _ = stop.changed() => return None,
                    }
                }
            }
        }
    }

    fn fresh_state(&self, started: SystemTime) -> NodeState {
        NodeState {
            v: STATE_VERSION,
            node: self.node.to_string(),
            groups: self
                .settings
                .groups
                .iter()
                .map(ToString::to_string)
                .collect(),
            status: "running".to_owned(),
            applied_sequence: 0,
            done_through: 0,
            stream_last_sequence: 0,
            lag: 0,
            purged: 0,
            retried: 0,
            dead_lettered: 0,
            last_error: None,
            last_error_at_ms: None,
            last_purge_at_ms: None,
            purged_everything_at_ms: None,
            started_at_ms: millis(started),
            updated_at_ms: millis(started),
            heartbeat_ms: self.settings.heartbeat.as_millis() as u64,
        }
    }

    async fn try_start(
        &self,
        name: &str,
        started: SystemTime,
        state: &mut NodeState,
    ) -> Result<Running, String> {
        let client = crate::backend::nats::connect(&self.settings.connection(), name)
            .await
            .map_err(|e| e.to_string())?;
        let mut js = jetstream::new(client);
        js.set_timeout(self.settings.timeout);
        let stream_name = self.settings.stream.as_str();
        let mut stream = js.get_stream(stream_name).await.map_err(|e| {
            format!(
                "stream `{stream_name}` not found yet ({e}); it is created by the first publish"
            )
        })?;
        let stream_info = stream
            .info()
            .await
            .map_err(|e| format!("cannot read stream `{stream_name}`: {e}"))?
            .clone();
        let kv = self.state_bucket(&js).await;
        let previous = match &kv {
            Some(kv) => kv
                .get(self.node.as_str())
                .await
                .ok()
                .flatten()
                .and_then(|bytes| serde_json::from_slice::<NodeState>(&bytes).ok()),
            None => None,
        };
        self.ensure_dead_letter_stream(&js).await;

        let consumer_name = self.consumer_name();
        let filter = self.filter_subject();
        let existing = match stream.consumer_info(&consumer_name).await {
            Ok(info) => Some(info),
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read consumer `{consumer_name}`: {e}")),
        };
        // Where the node's purges start, for the away check: the first sequence it still needs.
        let (deliver_policy, resume_from, last_seen) = match &existing {
            Some(info) if info.config.filter_subject == filter => (
                None,
                Some(info.ack_floor.stream_sequence + 1),
                previous.as_ref().map(|p| p.updated_at_ms),
            ),
            Some(info) => {
                // The node's groups changed: a consumer with the new filter, from its ack floor.
                let from = info.ack_floor.stream_sequence + 1;
                stream
                    .delete_consumer(&consumer_name)
                    .await
                    .map_err(|e| format!("cannot replace consumer `{consumer_name}`: {e}"))?;
                (
                    Some(consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: from,
                    }),
                    Some(from),
                    previous.as_ref().map(|p| p.updated_at_ms),
                )
            }
            None => match &previous {
                // The node had a consumer once (its state says how far it got): resume after
                // the last sequence before which everything was done (older states: after the
                // highest one applied).
                Some(p) if p.done_through > 0 || p.applied_sequence > 0 => {
                    let from = if p.done_through > 0 {
                        p.done_through + 1
                    } else {
                        p.applied_sequence + 1
                    };
                    (
                        Some(consumer::DeliverPolicy::ByStartSequence {
                            start_sequence: from,
                        }),
                        Some(from),
                        Some(p.updated_at_ms),
                    )
                }
                _ => match self.settings.start {
                    StartFrom::First => (Some(consumer::DeliverPolicy::All), None, None),
                    StartFrom::Time(t) => (
                        Some(consumer::DeliverPolicy::ByStartTime {
                            start_time: t.into(),
                        }),
                        Some(1),
                        Some(millis(t)),
                    ),
                    _ => (Some(consumer::DeliverPolicy::New), None, None),
                },
            },
        };
        let consumer = match deliver_policy {
            None => stream
                .get_consumer::<consumer::pull::Config>(&consumer_name)
                .await
                .map_err(|e| format!("cannot open consumer `{consumer_name}`: {e}"))?,
            Some(deliver_policy) => {
                let config = consumer::pull::Config {
                    durable_name: Some(consumer_name.clone()),
                    description: Some(format!("cache-purge agent of node {}", self.node)),
                    deliver_policy,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.settings.ack_wait,
                    max_deliver: -1,
                    filter_subject: filter.clone(),
                    max_ack_pending: 10_000,
                    ..Default::default()
                };
                let consumer = stream
                    .create_consumer(config)
                    .await
                    .map_err(|e| format!("cannot create consumer `{consumer_name}`: {e}"))?;
                tracing::info!(target: "cache_purge_hooks", node = %self.node, consumer = consumer_name, filter, "created the node's durable consumer");
                consumer
            }
        };
        if let Some(p) = &previous {
            state.applied_sequence = p.applied_sequence;
            state.done_through = p.done_through;
        }
        let mut running = Running {
            js,
            stream,
            consumer,
            kv,
            state: state.clone(),
            started,
            unfinished: BTreeSet::new(),
            highest_done: state.done_through,
            in_hand: BTreeSet::new(),
        };
        if let Some(from) = resume_from
            && missed_purges(&stream_info.state, from, last_seen)
        {
            self.away_too_long(&mut running, from, &stream_info).await;
        }
        self.write_state(&mut running, "running").await;
        tracing::info!(target: "cache_purge_hooks", node = %self.node, stream = stream_name, consumer = running.consumer.cached_info().name, "agent consuming");
        Ok(running)
    }

    async fn state_bucket(&self, js: &jetstream::Context) -> Option<kv::Store> {
        let bucket = self.settings.state_bucket.as_str();
        if let Ok(store) = js.get_key_value(bucket).await {
            return Some(store);
        }
        // The bucket's stream, as NATS lays out a KV bucket (`KV_<bucket>` on `$KV.<bucket>.>`,
        // one value per key), created directly: the client's own `create_key_value` asks for
        // the account's info first, which servers before 2.10 answer in a form it cannot read.
        let config = stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            description: Some("cache-purge agents' node states".to_owned()),
            max_messages_per_subject: 1,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            ..Default::default()
        };
        let created = match js.create_stream(config).await {
            Ok(_) => js.get_key_value(bucket).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match created {
            Ok(store) => Some(store),
            Err(e) => {
                tracing::warn!(target: "cache_purge_hooks", bucket, "cannot create the state bucket: {e}; the node's state is not reported");
                None
            }
        }
    }

    fn dead_letter_subject(&self) -> String {
        format!("{}-dead.{}", self.settings.subject_prefix, self.node)
    }

    async fn ensure_dead_letter_stream(&self, js: &jetstream::Context) {
        let name = format!("{}_DEAD", self.settings.stream);
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![format!("{}-dead.>", self.settings.subject_prefix)],
            max_age: DEAD_LETTER_MAX_AGE,
            description: Some("cache purge messages the agents could not purge".to_owned()),
            ..Default::default()
        };
        if let Err(e) = js.get_or_create_stream(config).await {
            tracing::warn!(target: "cache_purge_hooks", stream = name, "cannot create the dead-letter stream: {e}");
        }
    }

    /// Purges everything on every local backend (or warns), because purges meant for the node
    /// were dropped by the stream before it read them.
    async fn away_too_long(&self, running: &mut Running, from: u64, info: &stream::Info) {
        let message = format!(
            "node {} needed the stream from sequence {from}, but the stream keeps only {}..{} (max_age {}): purges meant for it were dropped",
            self.node,
            info.state.first_sequence,
            info.state.last_sequence,
            humantime::format_duration(info.config.max_age)
        );
        match self.settings.when_away_too_long {
            WhenAway::Warn => {
                tracing::error!(target: "cache_purge_hooks", node = %self.node, "{message}; when_away_too_long = \"warn\": pages may be stale");
                running.state.last_error = Some(message);
                running.state.last_error_at_ms = Some(millis(SystemTime::now()));
            }
            _ => {
                tracing::warn!(target: "cache_purge_hooks", node = %self.node, "{message}: purging everything (when_away_too_long = \"purge_everything\")");
                for backend in &self.backends {
                    let mut attempts = 0;
                    loop {
                        // Every backend, whatever its route: any of them may have missed
                        // purges of its hosts.
                        let report = self
                            .purger
                            .attempt_routed(
                                backend,
                                vec![Target::Everything],
                                History::after(attempts, running.started),
                                false,
                            )
                            .await;
                        match report {
                            Ok(r) if r.is_delivered() && r.unsupported.is_empty() => break,
                            Ok(r) if !r.unsupported.is_empty() => {
                                tracing::error!(target: "cache_purge_hooks", node = %self.node, backend, "this backend cannot purge everything: its pages may be stale");
                                break;
                            }
                            Ok(r) => match r.verdict() {
                                Some(Verdict::Retry { after }) => {
                                    attempts += 1;
                                    tokio::time::sleep(after).await;
                                }
                                _ => {
                                    tracing::error!(target: "cache_purge_hooks", node = %self.node, backend, error = ?r.error(), "purging everything failed: its pages may be stale");
                                    break;
                                }
                            },
                            Err(_) => break,
                        }
                    }
                }
                running.state.purged_everything_at_ms = Some(millis(SystemTime::now()));
            }
        }
    }

    async fn consume(
        &self,
        running: &mut Running,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        summary: &mut AgentSummary,
    ) -> Ended {
        let mut heartbeat = tokio::time::interval(self.settings.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let groups: BTreeSet<String> = self
            .settings
            .groups
            .iter()
            .map(|g| self.settings.subject_prefix.subject(g))
            .collect();
        let concurrency = self.settings.concurrency.get();
        // Messages being purged: each on every backend, acked on its own, so that one slow
        // purge does not hold up the ones behind it (purges commute: order does not matter).
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut stopping = *stop.borrow();
        let mut ended = Ended::Stopped;
        while !stopping && matches!(ended, Ended::Stopped) {
            let mut batch = match running
                .consumer
                .batch()
                .max_messages(PULL_BATCH.max(concurrency))
                .expires(PULL_EXPIRES)
                .messages()
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    if self.consumer_gone(running).await {
                        ended = Ended::ConsumerLost;
                        break;
                    }
                    self.failed(running, format!("cannot pull from the stream: {e}"));
                    tokio::select! {
                        _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
                        _ = stop.changed() => stopping = true,
                    }
                    continue;
                }
            };
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed(), if !stopping => stopping = true,
                    Some((sequence, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                        self.record(running, sequence, outcome, summary);
                    }
                    _ = heartbeat.tick() => {
                        if self.consumer_gone(running).await {
                            ended = Ended::ConsumerLost;
                            break;
                        }
                        self.write_state(running, "running").await;
                    }
                    next = batch.next(), if in_flight.len() < concurrency => match next {
                        None => break,
                        Some(Ok(message)) => {
                            let sequence = message.info().ok().map(|i| i.stream_sequence);
                            if let Some(sequence) = sequence {
                                if running.in_hand.contains(&sequence) {
                                    // Redelivered (its ack_wait passed) while still being
                                    // purged: the purge in hand acks it; if that ack is lost,
                                    // the stream delivers it again.
                                    continue;
                                }
                                running.unfinished.insert(sequence);
                            }
                            if stopping {
                                // Back to the stream at once, for the next agent of this node.
                                let _ = message.ack_with(AckKind::Nak(None)).await;
                            } else {
                                if let Some(sequence) = sequence {
                                    running.in_hand.insert(sequence);
                                }
                                let js = running.js.clone();
                                let started = running.started;
                                let groups = &groups;
                                in_flight.push(async move {
                                    (sequence, self.process(js, groups, message, started).await)
                                });
                            }
                        }
                        Some(Err(e)) => {
                            tracing::debug!(target: "cache_purge_hooks", node = %self.node, "pull ended: {e}");
                            if self.consumer_gone(running).await {
                                ended = Ended::ConsumerLost;
                            }
                            break;
                        }
                    }
                }
                if stopping && in_flight.is_empty() {
                    break;
                }
            }
        }
        // Stopping: the messages in hand are finished, not abandoned.
        while let Some((sequence, outcome)) = in_flight.next().await {
            self.record(running, sequence, outcome, summary);
        }
        summary.applied_sequence = running.state.applied_sequence;
        summary.purged_everything = running.state.purged_everything_at_ms.is_some();
        ended
    }

    /// Whether the node's consumer is gone from the stream (the server says so; an error
    /// reaching the server is not that).
    async fn consumer_gone(&self, running: &Running) -> bool {
        matches!(
            running.stream.consumer_info(self.consumer_name()).await,
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound
        )
    }

    fn failed(&self, running: &mut Running, message: String) {
        tracing::warn!(target: "cache_purge_hooks", node = %self.node, "{message}");
        running.state.last_error = Some(message);
        running.state.last_error_at_ms = Some(millis(SystemTime::now()));
    }

    /// Purges one message on every backend and acks, hands back or dead-letters it; what it
    /// did is recorded in the node's state by [`Agent::record`].
    async fn process(
        &self,
        js: jetstream::Context,
        groups: &BTreeSet<String>,
        message: jetstream::Message,
        started: SystemTime,
    ) -> Outcome {
        let (sequence, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered.max(1) as u32),
            Err(_) => return Outcome::Skipped,
        };
        if !groups.contains(message.subject.as_str()) {
            // Another group's purge, seen through a wildcard filter: not this node's.
            let _ = message.ack().await;
            return Outcome::Skipped;
        }
        let decoded = match wire::decode(&message.payload) {
            Ok(decoded) => decoded,
            Err(e) => {
                return self
                    .dead_letter(&js, &message, sequence, &e.to_string())
                    .await;
            }
        };
        let since = decoded.sent_at.max(started);
        let history = History::after(delivered - 1, since);
        let reports = futures::future::join_all(self.backends.iter().map(|backend| {
            self.purger
                .attempt(backend, decoded.targets.clone(), history)
        }))
        .await;
        let mut retry_after: Option<Duration> = None;
        let mut errors = Vec::new();
        let mut give_up: Option<String> = None;
        for (backend, report) in self.backends.iter().zip(&reports) {
            match report {
                Ok(r) if r.is_delivered() => {}
                Ok(r) => match r.verdict() {
                    Some(Verdict::Retry { after }) => {
                        retry_after = Some(retry_after.map_or(after, |a| a.max(after)));
                        if let Some(e) = r.error() {
                            errors.push(format!("backend `{backend}`: {e} (sequence {sequence}, attempt {delivered}, retried)"));
                        }
                    }
                    _ => {
                        give_up = Some(format!(
                            "backend `{backend}`: {}",
                            r.error().map(ToString::to_string).unwrap_or_default()
                        ));
                    }
                },
                Err(crate::attempt::AttemptError::Stopped) => {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    return Outcome::HandedBack;
                }
                Err(e) => give_up = Some(e.to_string()),
            }
        }
        if let Some(reason) = give_up {
            self.dead_letter(&js, &message, sequence, &reason).await
        } else if let Some(after) = retry_after {
            let _ = message.ack_with(AckKind::Nak(Some(after))).await;
            Outcome::Retried { errors }
        } else {
            // Acked only now that every backend purged it; confirmed by the server, so that a
            // restart resumes after it.
            match message.double_ack().await {
                Ok(()) => Outcome::Purged { sequence },
                Err(e) => Outcome::Unconfirmed {
                    message: format!(
                        "purged sequence {sequence} but its ack was not confirmed ({e}): it may be purged again"
                    ),
                },
            }
        }
    }

    /// Records what [`Agent::process`] did with message `sequence` in the node's state and
    /// the summary.
    fn record(
        &self,
        running: &mut Running,
        sequence: Option<u64>,
        outcome: Outcome,
        summary: &mut AgentSummary,
    ) {
        if let Some(sequence) = sequence {
            running.in_hand.remove(&sequence);
        }
        if let Some(sequence) = sequence
            && !matches!(outcome, Outcome::Retried { .. } | Outcome::HandedBack)
        {
            running.unfinished.remove(&sequence);
            running.highest_done = running.highest_done.max(sequence);
        }
        running.state.done_through = match running.unfinished.first() {
            Some(first) => first.saturating_sub(1),
            None => running.highest_done,
        };
        match outcome {
            Outcome::Skipped | Outcome::HandedBack => {}
            Outcome::Purged { sequence } => {
                summary.purged += 1;
                running.state.purged += 1;
                running.state.applied_sequence = running.state.applied_sequence.max(sequence);
                running.state.last_purge_at_ms = Some(millis(SystemTime::now()));
            }
            Outcome::Unconfirmed { message } => self.failed(running, message),
            Outcome::Retried { errors } => {
                running.state.retried += 1;
                summary.retried += 1;
                for error in errors {
                    self.failed(running, error);
                }
            }
            Outcome::DeadLettered { sequence, reason } => {
                summary.dead_lettered += 1;
                running.state.dead_lettered += 1;
                running.state.last_error =
                    Some(format!("sequence {sequence} dead-lettered: {reason}"));
                running.state.last_error_at_ms = Some(millis(SystemTime::now()));
            }
        }
    }

    async fn dead_letter(
        &self,
        js: &jetstream::Context,
        message: &jetstream::Message,
        sequence: u64,
        reason: &str,
    ) -> Outcome {
        tracing::error!(target: "cache_purge_hooks", node = %self.node, sequence, subject = message.subject.as_str(), "dead-lettered: {reason}");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Cache-Purge-Reason", one_line(reason).as_str());
        headers.insert("Cache-Purge-Subject", message.subject.as_str());
        headers.insert("Cache-Purge-Sequence", sequence.to_string().as_str());
        headers.insert("Cache-Purge-Node", self.node.as_str());
        let published = match js
            .publish_with_headers(self.dead_letter_subject(), headers, message.payload.clone())
            .await
        {
            Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = published {
            tracing::error!(target: "cache_purge_hooks", node = %self.node, sequence, "cannot store the dead letter: {e}");
        }
        let _ = message.ack_with(AckKind::Term).await;
        Outcome::DeadLettered {
            sequence,
            reason: reason.to_owned(),
        }
    }

    async fn write_state(&self, running: &mut Running, status: &str) {
        running.state.status = status.to_owned();
        if let Ok(info) = running.consumer.info().await {
            running.state.lag = info.num_pending + info.num_ack_pending as u64;
        }
        if let Ok(info) = running.stream.info().await {
            running.state.stream_last_sequence = info.state.last_sequence;
        }
        running.state.updated_at_ms = millis(SystemTime::now());
        let Some(kv) = &running.kv else { return };
        let Ok(bytes) = serde_json::to_vec(&running.state) else {
            return;
        };
        if let Err(e) = kv.put(self.node.as_str(), bytes.into()).await {
            tracing::debug!(target: "cache_purge_hooks", node = %self.node, "cannot write the node's state: {e}");
        }
    }
}

/// `cache-purge-agent-<node>`.
pub fn consumer_name(node: &NodeName) -> String {
    format!("cache-purge-agent-{node}")
}

/// Whether the stream dropped purges the node needed: it needs sequence `from` onwards, the
/// stream's oldest message is past it, and (when the node's last sign of life is known) the
/// stream dropped messages published after that (a node that was running all along, with a
/// filtered consumer whose ack floor stays behind other groups' messages, missed nothing).
fn missed_purges(state: &stream::State, from: u64, last_seen_ms: Option<u64>) -> bool {
    let dropped_after_from = state.first_sequence > from && state.last_sequence >= from;
    if !dropped_after_from {
        return false;
    }
    match last_seen_ms {
        None => true,
        Some(seen) => {
            let oldest_kept = if state.messages == 0 {
                state.last_timestamp
            } else {
                state.first_timestamp
            };
            millis(SystemTime::from(oldest_kept)) > seen
        }
    }
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect()
}
