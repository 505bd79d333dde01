//! In-process servers on their own thread and runtime, and blocking work moved off the
//! caller's runtime.

use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::{HarnessError, Result};

/// How long a background server's thread may take to build its runtime.
const THREAD_START_DEADLINE: Duration = Duration::from_secs(10);

/// A server running on its own std thread with its own current-thread Tokio runtime.
///
/// Independent of the caller's runtime (if any): it works from synchronous tests and from
/// any runtime flavour. Dropping it stops the server: the serve future is dropped, then the
/// runtime, which closes the listener and every connection, and the thread is joined.
#[derive(Debug)]
pub(crate) struct BackgroundServer {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    /// Runs `serve(listener)` on a new thread named `name` until the value is dropped.
    ///
    /// `listener` is already bound (so its port is known and connections queue up before the
    /// thread runs); it is made non-blocking and handed to Tokio on the new thread.
    pub(crate) fn spawn<F, Fut>(
        name: &str,
        listener: std::net::TcpListener,
        serve: F,
    ) -> Result<BackgroundServer>
    where
        F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        listener.set_nonblocking(true).map_err(|e| {
            HarnessError::io(format!("{name}: making the listener non-blocking"), e)
        })?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        let thread_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("building its Tokio runtime: {e}")));
                        return;
                    }
                };
                let listener =
                    match runtime.block_on(async { tokio::net::TcpListener::from_std(listener) }) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("registering the listener: {e}")));
                            return;
                        }
                    };
                let _ = ready_tx.send(Ok(()));
                runtime.block_on(async move {
                    tokio::select! {
                        () = serve(listener) => {}
                        _ = shutdown_rx => {}
                    }
                });
                // Dropping the runtime cancels every connection task and closes its socket.
                drop(runtime);
                tracing::trace!(thread = %thread_name, "background server stopped");
            })
            .map_err(|e| HarnessError::io(format!("spawning thread `{name}`"), e))?;
        let server = BackgroundServer {
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(THREAD_START_DEADLINE) {
            Ok(Ok(())) => Ok(server),
            Ok(Err(reason)) => Err(HarnessError::Thread {
                thread: name.to_owned(),
                reason,
            }),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(HarnessError::Thread {
                thread: name.to_owned(),
                reason: format!("not running after {THREAD_START_DEADLINE:?}"),
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(HarnessError::Thread {
                thread: name.to_owned(),
                reason: "it exited (panicked?) before it was running".to_owned(),
            }),
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The server future only does short, non-blocking work, so this returns promptly.
            let _ = thread.join();
        }
    }
}

/// Runs blocking `work` on a new thread and awaits its result without blocking the caller's
/// runtime (and without needing its timer or I/O driver).
///
/// If the returned future is dropped before the work is done, the work still finishes and its
/// result is dropped on that thread (for a server: stopped and cleaned up).
pub(crate) async fn off_thread<T, F>(name: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| HarnessError::io(format!("spawning thread `{name}`"), e))?;
    rx.await.map_err(|_| HarnessError::Thread {
        thread: name.to_owned(),
        reason: "it panicked".to_owned(),
    })?
}
