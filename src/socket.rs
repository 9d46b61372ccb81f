//! A TCP socket read again only once the reactor has seen it readable.
//!
//! async-net's stream tries `recvfrom` at every poll. A task that waits on its socket and
//! on something else together (a session's outbox, a TURN client's relayed data) is
//! polled for the other thing too, and each such poll cost a read that could only
//! return `EAGAIN`. [`Socket`] remembers that its last read found nothing and asks the
//! reactor instead, which answers without a system call.
//!
//! Never does: buffering, or reading from two tasks.

use futures_lite::{AsyncRead, AsyncWrite};
use smol::Async;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// A TCP socket that, once a read found it empty, waits for the reactor's word before
/// reading again.
pub struct Socket {
    io: Arc<Async<TcpStream>>,
    /// The last read found nothing; the reactor has this task's waker.
    drained: bool,
}

impl From<smol::net::TcpStream> for Socket {
    fn from(s: smol::net::TcpStream) -> Socket {
        Socket {
            io: s.into(),
            drained: false,
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        loop {
            if me.drained {
                // Ready only if an event came since the read that found nothing.
                ready!(me.io.poll_readable(cx))?;
                me.drained = false;
            }
            match me.io.get_ref().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => me.drained = true,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let io = &self.get_mut().io;
        loop {
            match io.get_ref().write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
            ready!(io.poll_writable(cx))?;
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.get_ref().shutdown(Shutdown::Write))
    }
}
