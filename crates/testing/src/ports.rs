//! Free loopback ports.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

use crate::error::{HarnessError, Result};

/// Ports this process handed out recently; never handed out twice in a row, so concurrent
/// tests in one process do not pick the same port between "bind, read, drop" and the server's
/// own bind.
static RECENT: Mutex<VecDeque<u16>> = Mutex::new(VecDeque::new());
const RECENT_KEPT: usize = 512;

/// Binds `127.0.0.1:0` and keeps the listener (for in-process servers: no race at all).
pub(crate) fn bind_loopback() -> Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| HarnessError::io("binding a free port on 127.0.0.1", e))
}

/// A port on 127.0.0.1 where nothing listens right now (bind port 0, read it, drop the
/// listener), for a server process to bind next.
///
/// Another process may take it before the server does: the callers retry with a new port when
/// a server reports "Address already in use".
pub(crate) fn free_port() -> Result<u16> {
    for _ in 0..64 {
        let listener = bind_loopback()?;
        let port = listener
            .local_addr()
            .map_err(|e| HarnessError::io("reading the address of a free port", e))?
            .port();
        drop(listener);
        if remember(port) {
            return Ok(port);
        }
    }
    Err(HarnessError::io(
        "finding a free port on 127.0.0.1",
        std::io::Error::other("the kernel kept returning recently used ports"),
    ))
}

/// Records `port` as handed out; false if it was handed out recently.
fn remember(port: u16) -> bool {
    let mut recent = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
    if recent.contains(&port) {
        return false;
    }
    if recent.len() == RECENT_KEPT {
        recent.pop_front();
    }
    recent.push_back(port);
    true
}

/// `"127.0.0.1:<port>"` where nothing listens: connecting to it is refused.
///
/// The port is found by binding port 0, reading the port and dropping the listener, and is
/// not handed out again by this harness for a while. In the unlikely case that no port can be
/// bound at all, `"127.0.0.1:1"` is returned (tcpmux: nothing listens there in practice, and
/// binding it needs privileges).
///
/// ```
/// let addr = cache_purge_hooks_testing::refused_addr();
/// let err = std::net::TcpStream::connect(&addr).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
/// ```
pub fn refused_addr() -> String {
    match free_port() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(_) => "127.0.0.1:1".to_owned(),
    }
}
