//! HTTP/1.1 over one TCP connection, pipelined: the wire of plain `http://` cache servers.
//!
//! hyper's HTTP/1 client, used before, has one request on a connection at a time: each purge
//! waits a round trip, and the cache server's thread for that connection sleeps and wakes
//! once per purge. A [`Conn`] writes a burst of requests in one `write` and then reads their
//! answers, which a server sends in the order it read the requests (RFC 9112, section
//! 9.3.2). Varnish reads a session's pipelined requests one after the other; so does nginx.
//!
//! A response's head is parsed by `httparse` (hyper's parser). Its body is framed as RFC 9112
//! (section 6.3) says: none for `1xx`, `204`, `304` and a `HEAD`'s answer; chunked when
//! `Transfer-Encoding` ends in `chunked`; else `Content-Length`; else until the close.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::Poll;

use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of a response body kept (an error message quotes its first 300 characters); the
/// rest is read and dropped, so that the connection can be used again.
pub(crate) const MAX_BODY_KEPT: usize = 16 * 1024;

/// The longest response head read (a cache server's answer to a purge has a few hundred
/// bytes); a longer one is malformed.
const MAX_HEAD: usize = 64 * 1024;

/// The most header fields of one response head.
const MAX_HEADERS: usize = 100;

/// How much room a read asks for at least.
const READ_CHUNK: usize = 16 * 1024;

/// Appends the request to `out` as hyper wrote it: the request line (origin form), each
/// header in the map's order as `name: value`, and the blank line. No body.
pub(crate) fn encode(
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// One response read whole (its first [`MAX_BODY_KEPT`] body bytes kept).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    /// What the connection can do after this answer.
    pub(crate) then: Then,
}

/// The state of a connection once an answer is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// It carries the next answer.
    Open,
    /// The server said it closes (`Connection: close`, an HTTP/1.0 answer without
    /// keep-alive, or a body that ends with the connection): it reads no later request
    /// (RFC 9112, section 9.6), so those are unprocessed and may go on another connection.
    Closes,
    /// The body broke off (closed, reset or malformed after the head): the answer stands, and
    /// what the server did with later requests is unknown.
    Broke,
}

/// Why no answer was read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The deadline passed: with the answer whose body it cut short, if its head had come.
    #[error("timed out")]
    Timeout(Option<Box<Answer>>),
    /// The server closed the connection before the answer was complete.
    #[error("the connection closed")]
    Closed,
    /// Reading failed (reset by the server, most often).
    #[error("{0}")]
    Io(#[source] io::Error),
    /// What came is no HTTP/1 response.
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// `future`'s output, or `None` once `expiry` has passed.
pub(crate) async fn until<F: Future>(
    mut expiry: Pin<&mut tokio::time::Sleep>,
    future: F,
) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        expiry.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// One connection to a cache server, with what was read of it and not yet parsed.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Where the unparsed bytes of `buf` start.
    pos: usize,
    /// Closed, broken, or left in the middle of an answer: never used again.
    ended: bool,
}

impl Conn {
    /// A connection over `stream`, nothing read yet.
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            pos: 0,
            ended: false,
        }
    }

    /// Whether it can carry more requests: nothing ended it, and no answer is half read.
    pub(crate) fn reusable(&self) -> bool {
        !self.ended && self.pos == self.buf.len()
    }

    /// Whether the server closed this idle connection, or sent something no request asked
    /// for: a peek at the socket, which takes nothing from it (an idle connection is not
    /// polled, so its close has not been seen otherwise).
    pub(crate) fn closed_while_idle(&self) -> bool {
        let mut byte = [MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(&self.stream).peek(&mut byte) {
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            // 0: the close; more: bytes nobody asked for.
            Ok(_) => true,
        }
    }

    /// Writes `bytes` (a burst of requests) whole; a failure ends the connection.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let written = self.stream.write_all(bytes).await;
        if written.is_err() {
            self.ended = true;
        }
        written
    }

    /// Reads the next answer, waiting until `expiry` at most. `head_request`: it answers a
    /// `HEAD`, so it has no body whatever its headers say. Any error ends the connection.
    pub(crate) async fn read_answer(
        &mut self,
        mut expiry: Pin<&mut tokio::time::Sleep>,
        head_request: bool,
    ) -> Result<Answer, ReadError> {
        let result = self.read_answer_inner(expiry.as_mut(), head_request).await;
        if result.is_err() {
            self.ended = true;
        }
        result
    }

    async fn read_answer_inner(
        &mut self,
        mut expiry: Pin<&mut tokio::time::Sleep>,
        head_request: bool,
    ) -> Result<Answer, ReadError> {
        let head = loop {
            match parse_head(&self.buf[self.pos..], head_request)? {
                Some((head, length)) => {
                    self.pos += length;
                    // An interim answer (`100 Continue`, `103 Early Hints`): the final one
                    // follows.
                    if head.status.is_informational() {
                        if head.status == StatusCode::SWITCHING_PROTOCOLS {
                            return Err(ReadError::Malformed(
                                "101 Switching Protocols, which no request asked for".to_owned(),
                            ));
                        }
                        continue;
                    }
                    break head;
                }
                None if self.buf.len() - self.pos > MAX_HEAD => {
                    return Err(ReadError::Malformed(format!(
                        "a response head over {MAX_HEAD} bytes"
                    )));
                }
                None => self.fill(expiry.as_mut()).await?,
            }
        };
        let mut body = Vec::new();
        let read = match head.framing {
            Framing::Length(n) => self.read_length(n, &mut body, expiry.as_mut()).await,
            Framing::Chunked => self.read_chunked(&mut body, expiry.as_mut()).await,
            Framing::Close => self.read_to_close(&mut body, expiry.as_mut()).await,
        };
        let mut answer = Answer {
            status: head.status,
            headers: head.headers,
            body,
            then: if head.closes || head.framing == Framing::Close {
                Then::Closes
            } else {
                Then::Open
            },
        };
        match read {
            Ok(()) => {
                if answer.then == Then::Closes {
                    self.ended = true;
                }
                Ok(answer)
            }
            Err(ReadError::Timeout(_)) => Err(ReadError::Timeout(Some(Box::new(answer)))),
            // The head came, so the request was answered: its body is cut short, as reqwest
            // and hyper left it, and the connection is done.
            Err(_) => {
                self.ended = true;
                answer.then = Then::Broke;
                Ok(answer)
            }
        }
    }

    /// Reads more into the buffer (its parsed part dropped first when that makes room).
    async fn fill(&mut self, expiry: Pin<&mut tokio::time::Sleep>) -> Result<(), ReadError> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ_CHUNK);
        match until(expiry, self.stream.read_buf(&mut self.buf)).await {
            None => Err(ReadError::Timeout(None)),
            Some(Ok(0)) => Err(ReadError::Closed),
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(ReadError::Io(e)),
        }
    }

    /// Takes up to `n` bytes of the buffer into the kept body.
    fn take(&mut self, n: u64, body: &mut Vec<u8>) -> u64 {
        let available = self.buf.len() - self.pos;
        let taken = usize::try_from(n).map_or(available, |n| n.min(available));
        let data = &self.buf[self.pos..self.pos + taken];
        let room = MAX_BODY_KEPT.saturating_sub(body.len());
        body.extend_from_slice(&data[..data.len().min(room)]);
        self.pos += taken;
        taken as u64
    }

    async fn read_length(
        &mut self,
        mut left: u64,
        body: &mut Vec<u8>,
        mut expiry: Pin<&mut tokio::time::Sleep>,
    ) -> Result<(), ReadError> {
        loop {
            left -= self.take(left, body);
            if left == 0 {
                return Ok(());
            }
            self.fill(expiry.as_mut()).await?;
        }
    }

    async fn read_chunked(
        &mut self,
        body: &mut Vec<u8>,
        mut expiry: Pin<&mut tokio::time::Sleep>,
    ) -> Result<(), ReadError> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf[self.pos..]) {
                    Ok(httparse::Status::Complete((length, size))) => {
                        self.pos += length;
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() - self.pos > MAX_HEAD => {
                        return Err(ReadError::Malformed(
                            "a chunk size line too long".to_owned(),
                        ));
                    }
                    Ok(httparse::Status::Partial) => self.fill(expiry.as_mut()).await?,
                    Err(_) => {
                        return Err(ReadError::Malformed("an invalid chunk size".to_owned()));
                    }
                }
            };
            if size == 0 {
                // The trailer section (most often empty), then the blank line.
                loop {
                    let rest = &self.buf[self.pos..];
                    if rest.starts_with(b"\r\n") {
                        self.pos += 2;
                        return Ok(());
                    }
                    if let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                        self.pos += end + 4;
                        return Ok(());
                    }
                    if rest.len() > MAX_HEAD {
                        return Err(ReadError::Malformed(
                            "a trailer section too long".to_owned(),
                        ));
                    }
                    self.fill(expiry.as_mut()).await?;
                }
            }
            self.read_length(size, body, expiry.as_mut()).await?;
            while self.buf.len() - self.pos < 2 {
                self.fill(expiry.as_mut()).await?;
            }
            if &self.buf[self.pos..self.pos + 2] != b"\r\n" {
                return Err(ReadError::Malformed("a chunk not ended by CRLF".to_owned()));
            }
            self.pos += 2;
        }
    }

    async fn read_to_close(
        &mut self,
        body: &mut Vec<u8>,
        mut expiry: Pin<&mut tokio::time::Sleep>,
    ) -> Result<(), ReadError> {
        loop {
            self.take(u64::MAX, body);
            match self.fill(expiry.as_mut()).await {
                Ok(()) => {}
                Err(ReadError::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// How a response's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    Close,
}

/// A parsed response head.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    /// The server closes the connection after this answer.
    closes: bool,
}

/// The response head at the start of `bytes` and its length, or `None` while it is
/// incomplete.
fn parse_head(bytes: &[u8], head_request: bool) -> Result<Option<(Head, usize)>, ReadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let length = match response.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ReadError::Malformed(e.to_string())),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| ReadError::Malformed("an invalid status code".to_owned()))?;
    // HTTP/1.0 closes unless it says keep-alive.
    let mut closes = response.version == Some(0);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut coded = false;
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| ReadError::Malformed(format!("header name {:?}", field.name)))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| ReadError::Malformed(format!("the value of header {name}")))?;
        if name == CONTENT_LENGTH {
            let n = std::str::from_utf8(field.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ReadError::Malformed("an invalid Content-Length".to_owned()))?;
            if content_length.is_some_and(|m| m != n) {
                return Err(ReadError::Malformed("two Content-Lengths".to_owned()));
            }
            content_length = Some(n);
        } else if name == TRANSFER_ENCODING {
            coded = true;
            // The last coding decides (a later field continues the list).
            chunked = field
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == CONNECTION {
            for option in field.value.split(|&b| b == b',') {
                let option = option.trim_ascii();
                if option.eq_ignore_ascii_case(b"close") {
                    closes = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") && response.version == Some(0)
                {
                    closes = false;
                }
            }
        }
        headers.append(name, value);
    }
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if coded {
        // A coding other than chunked last: the body ends with the connection.
        Framing::Close
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    Ok(Some((
        Head {
            status,
            headers,
            framing,
            closes,
        },
        length,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Reads every answer `server_bytes` holds, written in pieces of `piece` bytes by a
    /// loopback server that then closes.
    async fn answers(server_bytes: &'static [u8], piece: usize) -> Vec<Result<Answer, String>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            for part in server_bytes.chunks(piece) {
                stream.write_all(part).await.unwrap();
                stream.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let mut conn = Conn::new(TcpStream::connect(addr).await.unwrap());
        let mut out = Vec::new();
        let mut expiry = std::pin::pin!(tokio::time::sleep(Duration::from_secs(5)));
        loop {
            match conn.read_answer(expiry.as_mut(), false).await {
                Ok(answer) => {
                    let then = answer.then;
                    out.push(Ok(answer));
                    if then != Then::Open {
                        break;
                    }
                }
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break;
                }
            }
        }
        server.await.unwrap();
        out
    }

    const THREE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-purged: 3\r\n\r\nok\
HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nnot\r\n7\r\n cached\r\n0\r\nx-t: 1\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n";

    #[tokio::test]
    async fn pipelined_answers_are_read_in_order_whatever_the_pieces_they_come_in() {
        for piece in [1, 7, THREE.len()] {
            let read = answers(THREE, piece).await;
            let summary: Vec<_> = read
                .iter()
                .map(|r| match r {
                    Ok(a) => format!("{} {}", a.status.as_u16(), String::from_utf8_lossy(&a.body)),
                    Err(e) => e.clone(),
                })
                .collect();
            assert_eq!(
                summary,
                ["200 ok", "404 not cached", "204 ", "the connection closed"],
                "pieces of {piece}"
            );
            let first = read[0].as_ref().unwrap();
            assert_eq!(first.headers["x-purged"], "3");
        }
    }

    #[tokio::test]
    async fn an_answer_that_says_close_ends_the_connection_and_a_body_cut_short_stands() {
        let close = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
        let read = answers(close, 100).await;
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].as_ref().unwrap().then, Then::Closes);

        let until_close = b"HTTP/1.0 200 OK\r\n\r\nthe whole body";
        let read = answers(until_close, 5).await;
        let answer = read[0].as_ref().unwrap();
        assert_eq!(
            (answer.then, &answer.body[..]),
            (Then::Closes, &b"the whole body"[..])
        );

        let cut = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 50\r\n\r\nhalf";
        let read = answers(cut, 100).await;
        let answer = read[0].as_ref().unwrap();
        assert_eq!((answer.status.as_u16(), answer.then), (500, Then::Broke));
        assert_eq!(answer.body, b"half");
    }

    #[tokio::test]
    async fn what_is_no_http_response_is_malformed() {
        let cases: [(&'static [u8], &str); 4] = [
            (
                b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
                "malformed response: invalid HTTP version",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
                "malformed response: two Content-Lengths",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
                "malformed response: an invalid Content-Length",
            ),
            (
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
                "malformed response: 101 Switching Protocols, which no request asked for",
            ),
        ];
        for (bytes, expected) in cases {
            let read = answers(bytes, 100).await;
            assert_eq!(read.len(), 1);
            assert_eq!(read[0].as_ref().err().map(String::as_str), Some(expected));
        }
    }

    #[test]
    fn bodies_are_kept_up_to_16_kib() {
        let mut body = Vec::new();
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 20000\r\n\r\n";
        let mut bytes = head.to_vec();
        bytes.resize(head.len() + 20_000, b'x');
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let bytes: &'static [u8] = bytes.leak();
        let read = runtime.block_on(answers(bytes, 4096));
        body.extend_from_slice(&read[0].as_ref().unwrap().body);
        assert_eq!(body.len(), MAX_BODY_KEPT);
        // Read whole, although not kept: the connection carries the next answer.
        assert_eq!(
            read[1].as_ref().err().map(String::as_str),
            Some("the connection closed")
        );
    }
}
