//! The TCP socket as TLS sees it. OpenSSL reads each record in two reads, its 5-byte
//! header and then its body, so on a bare socket every message costs two `recvfrom`.
//! [`Sock`] reads ahead: one system call fetches up to [`READ_AHEAD`] bytes and the
//! record reads that follow are served from memory, so a message costs at most one
//! `recvfrom` and a burst of messages shares one. The buffer exists only while it holds
//! unread bytes; an idle connection keeps none. Writes pass straight through.

use futures_lite::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// Bytes fetched by one read from the socket: a few signaling messages, or a 3 KB SDP
/// offer in one read. (8 KiB measured no faster and cost more memory; see BENCHMARKS.md.)
pub const READ_AHEAD: usize = 4096;

pub struct Sock {
    tcp: TcpStream,
    /// Read ahead, not yet handed out: `buf[pos..len]`. Empty (no allocation) when drained.
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

impl Sock {
    pub fn new(tcp: TcpStream) -> Sock {
        Sock {
            tcp,
            buf: Vec::new(),
            pos: 0,
            len: 0,
        }
    }

    /// Hand out read-ahead bytes; free the buffer once it is drained.
    fn take(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.len {
            self.buf = Vec::new();
            (self.pos, self.len) = (0, 0);
        }
        n
    }
}

impl AsyncRead for Sock {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.pos < me.len {
            return Poll::Ready(Ok(me.take(out)));
        }
        if out.len() >= READ_AHEAD {
            return Pin::new(&mut me.tcp).poll_read(cx, out);
        }
        if me.buf.is_empty() {
            me.buf = vec![0; READ_AHEAD];
        }
        match ready!(Pin::new(&mut me.tcp).poll_read(cx, &mut me.buf)) {
            Ok(n) => {
                (me.pos, me.len) = (0, n);
                if n == 0 {
                    me.buf = Vec::new();
                    return Poll::Ready(Ok(0));
                }
                Poll::Ready(Ok(me.take(out)))
            }
            Err(e) => {
                me.buf = Vec::new();
                Poll::Ready(Err(e))
            }
        }
    }
}

impl AsyncWrite for Sock {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    /// Small reads are served from one read-ahead; a large read goes to the socket; the
    /// buffer is gone once drained; end of stream reads as 0.
    #[test]
    fn reads_ahead_and_lets_go() {
        smol::block_on(async {
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let mut sock = Sock::new(tcp);
            let data: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
            client.write_all(&data[..100]).await.unwrap();
            let mut head = [0u8; 5];
            sock.read_exact(&mut head).await.unwrap();
            assert_eq!(head, data[..5]);
            assert_eq!((sock.pos, sock.len, sock.buf.len()), (5, 100, READ_AHEAD));
            let mut rest = [0u8; 95];
            sock.read_exact(&mut rest).await.unwrap();
            assert_eq!(rest, data[5..100]);
            assert!(sock.buf.is_empty() && sock.buf.capacity() == 0);

            client.write_all(&data[100..]).await.unwrap();
            drop(client);
            let mut all = Vec::new();
            let mut big = vec![0u8; READ_AHEAD];
            loop {
                let n = sock.read(&mut big).await.unwrap();
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&big[..n]);
            }
            assert_eq!(all, data[100..]);
            assert!(sock.buf.is_empty());
        });
    }
}
