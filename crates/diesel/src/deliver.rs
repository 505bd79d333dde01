//! Handing a write's targets to the pipeline: outbox rows inside the write's transaction, or
//! the [`Purger`] once the write has committed.

use cache_purge_hooks_engine::{PurgeTargets, Purger, Route, Target, Targets};

/// Where a write's targets go, decided once per write from [`Purger::current`].
pub(crate) struct Plan {
    purger: Option<Purger>,
    pub(crate) source: &'static str,
}

/// Where [`Purger::route`] sends a write's purges in outbox mode.
pub(crate) struct OutboxRoute {
    /// The backends to write a row for.
    pub(crate) backends: Vec<String>,
    /// When set, the rows are written a second time, due this much later (the delayed second
    /// purge).
    pub(crate) repurge_after_ms: Option<i64>,
}

impl OutboxRoute {
    /// When each set of rows is due: now, and (with a delayed second purge) later.
    pub(crate) fn due_times(&self, now_ms: i64) -> Vec<i64> {
        let mut due = vec![now_ms];
        if let Some(after) = self.repurge_after_ms {
            due.push(now_ms.saturating_add(after));
        }
        due
    }
}

/// What became of the targets inside the transaction.
pub(crate) enum Staged {
    /// Nothing to purge.
    Nothing,
    /// Written to the outbox: wake the worker after COMMIT.
    Outbox,
    /// To hand to the purger after COMMIT.
    Send(Targets),
}

impl Plan {
    pub(crate) fn current<M: 'static>() -> Self {
        Plan {
            purger: Purger::current(),
            source: std::any::type_name::<M>(),
        }
    }

    /// The outbox rows to write, when [`Purger::route`] says the write's purges go to the
    /// outbox.
    pub(crate) fn outbox_backends(&self) -> Option<OutboxRoute> {
        match self.purger.as_ref()?.route() {
            Route::Outbox {
                backends,
                repurge_after,
            } => Some(OutboxRoute {
                backends,
                repurge_after_ms: repurge_after
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            }),
            _ => None,
        }
    }

    /// After COMMIT (or RELEASE of the write's savepoint): hands the targets over. Inside
    /// [`transaction`](crate::transaction), the purger holds them until the outer COMMIT.
    pub(crate) fn finish(self, staged: Staged) {
        match staged {
            Staged::Nothing => {}
            Staged::Outbox => {
                if let Some(p) = &self.purger {
                    p.outbox_written();
                }
            }
            Staged::Send(targets) => {
                let targets = targets.into_valid(self.source);
                match &self.purger {
                    Some(p) => p.try_purge(targets),
                    None => Purger::log_missing(self.source, &targets),
                }
            }
        }
    }

    /// [`finish`](Self::finish), waiting for room in the queue with `when_full = "wait"`.
    #[cfg(feature = "async")]
    pub(crate) async fn finish_async(self, staged: Staged) {
        match staged {
            Staged::Send(targets) => {
                let targets = targets.into_valid(self.source);
                match &self.purger {
                    Some(p) => p.purge(targets).await,
                    None => Purger::log_missing(self.source, &targets),
                }
            }
            other => self.finish(other),
        }
    }
}

/// The targets of the rows a write affected (old rows first, for an update).
pub(crate) fn targets_of<'a, M: PurgeTargets + 'a>(
    rows: impl IntoIterator<Item = &'a M>,
) -> Targets {
    let mut targets = Targets::new();
    for row in rows {
        row.purge_targets(&mut targets);
    }
    targets
}

/// The valid targets to write to the outbox (rejections are logged here, once).
pub(crate) fn outbox_targets(source: &str, targets: Targets) -> Vec<Target> {
    targets.into_valid(source)
}

/// Logs an outbox write that failed; the targets are then sent directly after COMMIT.
pub(crate) fn outbox_failed(source: &str, error: &diesel::result::Error, targets: usize) {
    tracing::error!(
        target: "cache_purge_hooks",
        source,
        error = %error,
        targets,
        "could not write the purge to the outbox (is the cache_purge_outbox table created?); \
         sending it directly after the commit"
    );
}
