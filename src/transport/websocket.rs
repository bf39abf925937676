//! A server WebSocket over a connection's [`WireIo`]: tungstenite's protocol state
//! driven directly from the connection's task.
//!
//! tokio-tungstenite's `WebSocketStream` would do the same, but it keeps two shared
//! waker proxies per socket (two allocations) so that a reader and a writer in different
//! tasks can wake each other. A connection here is one task that both reads and writes,
//! so the task's own context is all the socket needs; at tens of thousands of idle
//! connections those bytes are a good share of each one's memory.

use crate::transport::wire::WireIo;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};
use tokio_tungstenite::tungstenite::Message;

pub(crate) struct WebSocket<S> {
    context: WebSocketContext,
    io: WireIo<S>,
    /// A read ended the stream (closed, or failed): every later read says so at once.
    ended: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    pub fn server(io: WireIo<S>, config: WebSocketConfig) -> Self {
        WebSocket {
            context: WebSocketContext::new(Role::Server, Some(config)),
            io,
            ended: false,
        }
    }

    pub fn get_ref(&self) -> &WireIo<S> {
        &self.io
    }

    pub fn get_mut(&mut self) -> &mut WireIo<S> {
        &mut self.io
    }

    /// The next message from the peer (pongs and close replies are queued as it reads);
    /// `None` once the connection is closed.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, WsError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let mut io = TaskIo {
            io: &mut self.io,
            cx,
        };
        match self.context.read(&mut io) {
            Ok(message) => Poll::Ready(Some(Ok(message))),
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            Err(e) => {
                self.ended = true;
                match e {
                    WsError::AlreadyClosed | WsError::ConnectionClosed => Poll::Ready(None),
                    e => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }

    /// Sends a close frame (or answers the peer's) and writes it out.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), WsError> {
        let mut frame = Some(frame);
        poll_fn(|cx| {
            let mut io = TaskIo {
                io: &mut self.io,
                cx,
            };
            // The first call queues the close frame; later ones only flush it.
            let result = match frame.take() {
                Some(frame) => self.context.close(&mut io, frame),
                None => self.context.flush(&mut io),
            };
            match result {
                Ok(()) | Err(WsError::ConnectionClosed) => Poll::Ready(Ok(())),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            }
        })
        .await
    }
}

/// The socket as tungstenite's blocking `Read + Write`, for one poll: "would block"
/// means the task's context is registered for wake-up.
struct TaskIo<'a, 'b, S> {
    io: &'a mut WireIo<S>,
    cx: &'a mut Context<'b>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Read for TaskIo<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Write for TaskIo<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}
