//! `cache-purge agent` (run beside a cache node) and `cache-purge fleet status`.

use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use cache_purge_hooks_engine::backend::nats::connect;
use cache_purge_hooks_engine::fleet::{Agent, AgentError, Health, NodeState, consumer_name};
use cache_purge_hooks_engine::settings::{AgentSettings, BackendSettings, NodeName};
use futures::StreamExt as _;

use crate::args::{AgentArgs, FleetArgs, FleetCommand, GlobalArgs};
use crate::error::CliError;
use crate::exit;
use crate::output::{Output, human_duration};

/// `cache-purge agent`: runs until SIGTERM or Ctrl-C, then exits 0.
pub(crate) fn run_agent(
    global: &GlobalArgs,
    args: AgentArgs,
    out: &Output,
) -> Result<u8, CliError> {
    let loaded = crate::settings::load(global)?;
    let node = match args.node.as_deref() {
        Some(name) => Some(
            name.parse::<NodeName>()
                .map_err(|e| CliError::usage(format!("--node: {}", e.message)))?,
        ),
        None => None,
    };
    let runtime = crate::runtime()?;
    let result = runtime.block_on(async {
        let agent = Agent::from_settings(&loaded.settings, node).map_err(|e| match e {
            AgentError::Build(e) => CliError::from(e),
            other => CliError::usage(other.to_string())
                .with_hint("docs/fleet.md: an agent's settings are the node's own backends and an [agent] table"),
        })?;
        // The handler is installed now, before the agent starts: a SIGTERM from then on stops
        // it cleanly.
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| CliError::failed(format!("cannot handle SIGTERM: {e}")))?;
        let shutdown = async move {
            let mut term = term;
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        let summary = agent
            .run(shutdown)
            .await
            .map_err(|e| CliError::failed(e.to_string()))?;
        if out.json {
            out.json(&serde_json::json!({
                "purged": summary.purged,
                "retried": summary.retried,
                "dead_lettered": summary.dead_lettered,
                "applied_sequence": summary.applied_sequence,
                "purged_everything": summary.purged_everything,
            }));
        } else {
            out.line(format!(
                "agent stopped: {} purged, {} retried, {} dead-lettered, applied up to sequence {}",
                summary.purged, summary.retried, summary.dead_lettered, summary.applied_sequence
            ));
        }
        Ok(exit::SUCCESS)
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// `cache-purge fleet forget NODE`: deletes the node's consumer and its state key.
async fn forget(
    settings: &AgentSettings,
    node: &NodeName,
    force: bool,
    out: &Output,
) -> Result<u8, CliError> {
    let client = connect(&settings.connection(), "cache-purge fleet forget")
        .await
        .map_err(|e| CliError::failed(e.to_string()))?;
    let mut js = jetstream::new(client);
    js.set_timeout(settings.timeout);
    let bucket = settings.state_bucket.as_str();
    let store = js.get_key_value(bucket).await.ok();
    let state = match &store {
        Some(store) => match store.get(node.as_str()).await {
            Ok(Some(bytes)) => serde_json::from_slice::<NodeState>(&bytes).ok(),
            Ok(None) => None,
            // Unknown is not "not running": without --force, do not guess.
            Err(e) if !force => {
                return Err(CliError::failed(format!(
                    "cannot read node `{node}` from bucket `{bucket}`: {e}"
                ))
                .with_hint("try again, or pass --force if its agent is stopped"));
            }
            Err(_) => None,
        },
        None => None,
    };
    if let Some(state) = &state {
        let health = state.health(SystemTime::now());
        if matches!(health, Health::Ok | Health::Failing) && !force {
            return Err(CliError::failed(format!(
                "node `{node}` is {} (it reported {} ago): its agent still runs",
                health.as_str(),
                human_duration(state.age(SystemTime::now()))
            ))
            .with_hint("stop its agent first, or pass --force"));
        }
    }
    let consumer = consumer_name(node);
    let stream_name = settings.stream.as_str();
    let deleted_consumer = match js.get_stream(stream_name).await {
        Ok(stream) => match stream.delete_consumer(&consumer).await {
            Ok(_) => true,
            Err(e) => match e.kind() {
                jetstream::stream::ConsumerErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND =>
                {
                    false
                }
                _ => {
                    return Err(CliError::failed(format!(
                        "cannot delete consumer `{consumer}` of stream `{stream_name}`: {e}"
                    )));
                }
            },
        },
        Err(e) => match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                false
            }
            _ => {
                return Err(CliError::failed(format!(
                    "cannot find stream `{stream_name}` to delete consumer `{consumer}`: {e}"
                )));
            }
        },
    };
    let deleted_state = match (&store, &state) {
        (Some(store), Some(_)) => {
            store.purge(node.as_str()).await.map_err(|e| {
                CliError::failed(format!(
                    "cannot remove `{node}` from bucket `{bucket}`: {e}"
                ))
            })?;
            true
        }
        _ => false,
    };
    if !deleted_consumer && !deleted_state {
        return Err(CliError::failed(format!(
            "no node `{node}`: no consumer `{consumer}` on stream `{stream_name}` and no state in bucket `{bucket}`"
        ))
        .with_hint("`cache-purge fleet status` lists the nodes"));
    }
    if out.json {
        out.json(&serde_json::json!({
            "node": node.as_str(),
            "consumer_deleted": deleted_consumer,
            "state_deleted": deleted_state,
        }));
    } else {
        out.line(format!(
            "forgot node `{node}`: consumer `{consumer}` {}, state {}",
            if deleted_consumer {
                "deleted"
            } else {
                "was not there"
            },
            if deleted_state {
                "removed"
            } else {
                "was not there"
            },
        ));
    }
    Ok(exit::SUCCESS)
}

/// `cache-purge fleet ...`.
pub(crate) fn run_fleet(
    global: &GlobalArgs,
    args: FleetArgs,
    out: &Output,
) -> Result<u8, CliError> {
    let loaded = crate::settings::load(global)?;
    let settings = fleet_settings(&loaded.settings).ok_or_else(|| {
        CliError::usage(
            "no fleet in the settings: neither an [agent] table nor a kind = \"nats\" backend",
        )
        .with_hint("docs/fleet.md")
    })?;
    let runtime = crate::runtime()?;
    let result = runtime.block_on(async {
        match args.command {
            FleetCommand::Status => status(&settings, out).await,
            FleetCommand::Forget { node, force } => {
                let node = node
                    .parse::<NodeName>()
                    .map_err(|e| CliError::usage(format!("NODE: {}", e.message)))?;
                forget(&settings, &node, force, out).await
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// Where the fleet is: the `[agent]` table, else the first `kind = "nats"` backend's servers,
/// stream and subject prefix.
fn fleet_settings(settings: &cache_purge_hooks_engine::Settings) -> Option<AgentSettings> {
    if let Some(agent) = &settings.agent {
        return Some(agent.clone());
    }
    settings.backends.values().find_map(|b| match &b.settings {
        BackendSettings::Nats(n) => {
            let mut agent = AgentSettings::default();
            agent.servers = n.servers_or_default();
            agent.auth = n.auth.clone();
            agent.tls = n.tls.clone();
            agent.stream = n.stream.clone();
            agent.subject_prefix = n.subject_prefix.clone();
            agent.timeout = n.timeout;
            Some(agent)
        }
        _ => None,
    })
}

/// One node as `fleet status` shows it.
struct Row {
    state: NodeState,
    health: Health,
    lag: u64,
}

async fn status(settings: &AgentSettings, out: &Output) -> Result<u8, CliError> {
    let client = connect(&settings.connection(), "cache-purge fleet status")
        .await
        .map_err(|e| CliError::failed(e.to_string()))?;
    let mut js = jetstream::new(client);
    js.set_timeout(settings.timeout);
    let bucket = settings.state_bucket.as_str();
    let store = js.get_key_value(bucket).await.map_err(|e| {
        CliError::failed(format!(
            "no state bucket `{bucket}` ({e}): no agent has reported yet"
        ))
        .with_hint("start `cache-purge agent` beside each cache node")
    })?;
    let stream = js.get_stream(settings.stream.as_str()).await.ok();
    let last_sequence = match &stream {
        Some(s) => s.get_info().await.ok().map(|i| i.state.last_sequence),
        None => None,
    };
    let mut keys = store
        .keys()
        .await
        .map_err(|e| CliError::failed(format!("cannot list bucket `{bucket}`: {e}")))?;
    let mut names = Vec::new();
    while let Some(key) = keys.next().await {
        if let Ok(key) = key {
            names.push(key);
        }
    }
    // The listing watches the bucket: a key written meanwhile (a heartbeat) comes twice.
    names.sort();
    names.dedup();
    let now = SystemTime::now();
    let mut rows = Vec::new();
    for name in names {
        let Ok(Some(bytes)) = store.get(name.as_str()).await else {
            continue;
        };
        let Ok(state) = serde_json::from_slice::<NodeState>(&bytes) else {
            continue;
        };
        // The live lag from the node's consumer, when the stream answers.
        let live = match (&stream, name.parse::<NodeName>()) {
            (Some(s), Ok(node)) => s
                .consumer_info(consumer_name(&node))
                .await
                .ok()
                .map(|i| i.num_pending + i.num_ack_pending as u64),
            _ => None,
        };
        let health = state.health(now);
        rows.push(Row {
            lag: live.unwrap_or(state.lag),
            health,
            state,
        });
    }
    let unhealthy = rows
        .iter()
        .filter(|r| matches!(r.health, Health::Failing | Health::Stale))
        .count();
    if out.json {
        let nodes: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "node": r.state.node,
                    "health": r.health.as_str(),
                    "status": r.state.status,
                    "lag": r.lag,
                    "applied_sequence": r.state.applied_sequence,
                    "groups": r.state.groups,
                    "purged": r.state.purged,
                    "retried": r.state.retried,
                    "dead_lettered": r.state.dead_lettered,
                    "last_error": r.state.last_error,
                    "last_error_at_ms": r.state.last_error_at_ms,
                    "purged_everything_at_ms": r.state.purged_everything_at_ms,
                    "updated_at_ms": r.state.updated_at_ms,
                    "age_ms": r.state.age(now).as_millis() as u64,
                })
            })
            .collect();
        out.json(&serde_json::json!({
            "stream": settings.stream.as_str(),
            "last_sequence": last_sequence,
            "nodes": nodes,
            "unhealthy": unhealthy,
        }));
    } else if rows.is_empty() {
        out.line(format!("no node has reported in bucket `{bucket}` yet"));
    } else {
        out.line(format!(
            "{:<20} {:<8} {:>8} {:>10}  {:<16} {:>10}  LAST ERROR",
            "NODE", "HEALTH", "LAG", "APPLIED", "GROUPS", "SEEN"
        ));
        for r in &rows {
            let mark = out.mark(matches!(r.health, Health::Ok | Health::Stopped));
            out.line(format!(
                "{:<20} {:<8} {:>8} {:>10}  {:<16} {:>10}  {} {}",
                r.state.node,
                r.health.as_str(),
                r.lag,
                r.state.applied_sequence,
                r.state.groups.join(","),
                format!("{} ago", human_duration(r.state.age(now))),
                mark,
                r.state.last_error.as_deref().unwrap_or("-"),
            ));
        }
        if let Some(last) = last_sequence {
            out.line(format!("stream {}: last sequence {last}", settings.stream));
        }
    }
    Ok(if unhealthy == 0 {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}
