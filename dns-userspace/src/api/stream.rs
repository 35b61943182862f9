//! Response bodies written by blocking code a chunk at a time: `/metrics` and
//! `/api/status` for 40 000 endpoints are tens of megabytes of text (134 MB of metrics), so
//! they are encoded on a blocking thread into [`ChunkWriter`] and go out as they are
//! written, at most [`QUEUED`] chunks of [`CHUNK`] bytes ahead of the client. A body that
//! fits in one chunk goes out whole, with a `Content-Length`, as any small response does.
//! A client that goes away stops the encoding (the writer's next chunk fails).

use std::{
    collections::VecDeque,
    convert::Infallible,
    fmt, io,
    pin::Pin,
    task::{Context, Poll},
};

use axum::body::{Body, Bytes, HttpBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

/// Bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
/// Chunks written ahead of what the client has taken.
pub const QUEUED: usize = 4;

/// Where a producer writes the body: text ([`fmt::Write`]) or bytes ([`io::Write`]).
pub struct ChunkWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Bytes>,
    /// The client went away: every further write fails.
    closed: bool,
}

impl ChunkWriter {
    fn new(tx: mpsc::Sender<Bytes>) -> Self {
        Self {
            buf: Vec::with_capacity(CHUNK),
            tx,
            closed: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), Closed> {
        if self.closed {
            return Err(Closed);
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(())
    }

    /// Sends what is buffered (blocking while [`QUEUED`] chunks wait for the client).
    fn send(&mut self) -> Result<(), Closed> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        if self.tx.blocking_send(chunk).is_err() {
            self.closed = true;
            return Err(Closed);
        }
        Ok(())
    }
}

/// The client is gone.
struct Closed;

impl fmt::Write for ChunkWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes()).map_err(|Closed| fmt::Error)
    }
}

impl io::Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.push(bytes)
            .map_err(|Closed| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The body `produce` writes, run on a blocking thread. Resolves once the first chunk is
/// written: a body of one chunk is returned whole, a longer one streams the rest as
/// `produce` writes it.
pub async fn body(produce: impl FnOnce(&mut ChunkWriter) + Send + 'static) -> Body {
    let (tx, mut rx) = mpsc::channel(QUEUED);
    tokio::task::spawn_blocking(move || {
        let mut writer = ChunkWriter::new(tx);
        produce(&mut writer);
        // An error: the client is gone, nobody reads the rest.
        let _ = writer.send();
    });
    let Some(first) = rx.recv().await else {
        return Body::empty();
    };
    match rx.recv().await {
        None => Body::from(first),
        Some(second) => Body::new(Chunks {
            ready: VecDeque::from([first, second]),
            rx,
        }),
    }
}

/// The chunks of a streamed body, in order.
struct Chunks {
    ready: VecDeque<Bytes>,
    rx: mpsc::Receiver<Bytes>,
}

impl HttpBody for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(chunk) = self.ready.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_body_goes_out_whole() {
        let body =
            body(|w| fmt::Write::write_str(w, "hotpool_build_info 1").expect("a write")).await;
        assert_eq!(
            body.size_hint().exact(),
            Some(20),
            "one chunk has its length"
        );
        let bytes = body.collect().await.expect("the body").to_bytes();
        assert_eq!(&bytes[..], b"hotpool_build_info 1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_body_streams_in_chunks_in_order() {
        let lines = 50_000;
        let mut body = body(move |w| {
            for i in 0..lines {
                fmt::Write::write_str(w, &format!("line {i}\n")).expect("a write");
            }
        })
        .await;
        assert_eq!(body.size_hint().exact(), None, "no length: it streams");
        let (mut chunks, mut text) = (0, Vec::new());
        while let Some(frame) = body.frame().await {
            let data = frame.expect("a frame").into_data().expect("data");
            assert!(data.len() <= CHUNK + 16, "a chunk of {} bytes", data.len());
            chunks += 1;
            text.extend_from_slice(&data);
        }
        let want: String = (0..lines).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(text).expect("text"), want);
        assert!(chunks > 5, "{chunks} chunks");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_going_away_stops_the_writer() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let body = body(move |w| {
            let mut written = 0usize;
            while w.write_all(&[b'x'; 1024]).is_ok() {
                written += 1024;
            }
            let _ = done_tx.send(written);
        })
        .await;
        drop(body);
        let written = tokio::task::spawn_blocking(move || {
            done_rx
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("the writer stopped")
        })
        .await
        .expect("the waiting thread");
        assert!(
            written <= (QUEUED + 3) * CHUNK,
            "{written} bytes written for nobody"
        );
    }
}
