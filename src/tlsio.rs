//! OpenSSL's `SslStream` as a futures-io stream. OpenSSL drives a blocking-style
//! `Read + Write`; [`Bridge`] gives it one over an async socket by polling that socket
//! with the waker of the task that is running now and turning `Pending` into
//! `WouldBlock`, which OpenSSL reports as `WANT_READ`/`WANT_WRITE` and [`TlsStream`]
//! turns back into `Pending`. The task is woken by the socket it polled, so no step
//! busy-waits. Owns no buffers of its own: OpenSSL's record buffers are all there is.
//!
//! Never does: blocking I/O, or buffering beyond what OpenSSL does.

use futures_lite::{AsyncRead, AsyncWrite};
use openssl::ssl::{self, ErrorCode, ShutdownResult, Ssl, SslStream};
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

/// A sync `Read + Write` over an async stream, polled with the waker of the last caller.
pub struct Bridge<S> {
    io: S,
    waker: Waker,
}

impl<S: Unpin> Bridge<S> {
    fn poll<T>(
        &mut self,
        f: impl FnOnce(Pin<&mut S>, &mut Context) -> Poll<io::Result<T>>,
    ) -> io::Result<T> {
        let mut cx = Context::from_waker(&self.waker);
        match f(Pin::new(&mut self.io), &mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncRead + Unpin> Read for Bridge<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.poll(|io, cx| io.poll_read(cx, buf))
    }
}

impl<S: AsyncWrite + Unpin> Write for Bridge<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.poll(|io, cx| io.poll_write(cx, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.poll(|io, cx| io.poll_flush(cx))
    }
}

/// A TLS connection over `S`, usable wherever an `AsyncRead + AsyncWrite` is.
pub struct TlsStream<S> {
    ssl: SslStream<Bridge<S>>,
    /// close_notify went out: a second `SSL_shutdown` would wait for the peer's.
    closed: bool,
}

/// Whether an OpenSSL error only means "the socket would block": wait for its waker.
fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream<S> {
    /// Run the server side of the handshake on `io`.
    pub async fn accept(ssl: Ssl, io: S) -> Result<TlsStream<S>, ssl::Error> {
        let bridge = Bridge {
            io,
            waker: Waker::noop().clone(),
        };
        let mut me = TlsStream {
            ssl: SslStream::new(ssl, bridge)?,
            closed: false,
        };
        poll_fn(|cx| {
            me.set_waker(cx);
            match me.ssl.accept() {
                Ok(()) => Poll::Ready(Ok(())),
                Err(e) if e.io_error().is_some_and(would_block) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            }
        })
        .await?;
        Ok(me)
    }

    /// The TLS session, e.g. to ask which version or cipher was agreed.
    pub fn ssl(&self) -> &ssl::SslRef {
        self.ssl.ssl()
    }

    fn set_waker(&mut self, cx: &Context) {
        // `clone_from` skips the clone when the same task polls again (the usual case).
        self.ssl.get_mut().waker.clone_from(cx.waker());
    }

    /// Run one blocking-style OpenSSL call with this task's waker.
    fn with<T>(
        &mut self,
        cx: &Context,
        f: impl FnOnce(&mut SslStream<Bridge<S>>) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        self.set_waker(cx);
        match f(&mut self.ssl) {
            Err(e) if would_block(&e) => Poll::Pending,
            r => Poll::Ready(r),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // `SslStream::read` reads 0 at close_notify and retries OpenSSL's internal
        // WANT_READs (TLS 1.3 tickets, key updates) itself.
        self.get_mut().with(cx, |s| s.read(buf))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A write that returned Pending is retried with the same bytes (futures-io
        // callers do), which is what OpenSSL asks for.
        self.get_mut().with(cx, |s| s.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().with(cx, |s| s.flush())
    }

    /// Send close_notify, then close the socket.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if !me.closed {
            ready!(me.with(cx, |s| {
                match s.shutdown() {
                    Ok(ShutdownResult::Sent | ShutdownResult::Received) => Ok(()),
                    Err(e) if e.code() == ErrorCode::ZERO_RETURN => Ok(()),
                    Err(e) => Err(e
                        .into_io_error()
                        .unwrap_or_else(|e| io::Error::other(e.to_string()))),
                }
            }))?;
            me.closed = true;
        }
        Pin::new(&mut me.ssl.get_mut().io).poll_close(cx)
    }
}
