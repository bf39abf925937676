//! A server WebSocket over a connection's [`WireIo`]: tungstenite's protocol state,
//! driven from the connection's own task, and held only while the client is talking.
//!
//! Most of a server's connections are idle most of the time, and their memory is the
//! server's memory. tungstenite's `WebSocketContext` (its config, frame codec, read
//! buffer, a half-received message) is a few hundred bytes per socket; tokio-tungstenite
//! adds two shared waker proxies for a reader and a writer in different tasks. Here one
//! task both reads and writes, so the task's context is all the socket needs; and the
//! client's bytes are cut into whole frames before tungstenite sees them, so whenever
//! tungstenite has read everything it was given, holds no fragment of a message and is
//! not closing, it holds nothing worth keeping: it is dropped, and made again when the
//! client next sends.

use crate::transport::wire::WireIo;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, Role, WebSocketConfig, WebSocketContext,
};
use tokio_tungstenite::tungstenite::Message;

/// tungstenite's read chunk. Clients send little: a small chunk keeps a busy
/// connection's buffer small; larger frames grow it on demand.
const READ_BUFFER_SIZE: usize = 128;
/// tungstenite's own write buffer: room for a pong and a close frame (at most 131 bytes
/// each), so a pending pong never crowds out the close.
const CONTROL_WRITE_BUFFER: usize = 512;
/// Bytes read from the socket at a time.
const SOCKET_READ_CHUNK: usize = 4096;

/// tungstenite's settings for a server socket whose messages and frames are at most
/// `max_message_size` bytes. tungstenite writes only control frames (messages go
/// through [`WireIo`]): no write buffer of its own, and a small bound so that it keeps
/// just the latest pong for a peer that pings and never reads.
fn config(max_message_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(0)
        .max_write_buffer_size(CONTROL_WRITE_BUFFER)
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
}

pub(crate) struct WebSocket<S> {
    /// tungstenite's state; `None` while the client is quiet (see the module's doc).
    context: Option<Box<WebSocketContext>>,
    io: WireIo<S>,
    /// Bytes read from the socket and not yet handed to tungstenite; `None` when none.
    input: Option<Box<Input>>,
    max_message_size: u32,
    /// The last whole data frame handed over left its message unfinished.
    mid_message: bool,
    /// A write would have waited during this read: tungstenite may hold a reply.
    write_waited: bool,
    /// A read ended the stream (closed, or failed): every later read says so at once.
    ended: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    pub fn server(io: WireIo<S>, max_message_size: usize) -> Self {
        WebSocket {
            context: None,
            io,
            input: None,
            // The configuration bounds it to 64 MiB.
            max_message_size: u32::try_from(max_message_size).unwrap_or(u32::MAX),
            mid_message: false,
            write_waited: false,
            ended: false,
        }
    }

    /// Bytes the client sent that were read from the socket before this WebSocket
    /// existed (with its upgrade request): read before anything else.
    pub fn push_input(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let input = self.input.get_or_insert_with(Box::default);
        input.bytes.extend_from_slice(bytes);
        input.scan(self.max_message_size as usize, &mut self.mid_message);
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
        if self.context.is_none() && self.input.is_none() {
            // A quiet connection woken to write: look for the client's bytes before
            // making any state to read them with.
            match ready!(self.poll_first_bytes(cx)) {
                Ok(true) => {}
                Ok(false) => {
                    self.ended = true;
                    return Poll::Ready(None);
                }
                Err(e) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(WsError::Io(e))));
                }
            }
        }
        self.write_waited = false;
        let max = self.max_message_size as usize;
        let context = self.context.get_or_insert_with(|| {
            Box::new(WebSocketContext::new(Role::Server, Some(config(max))))
        });
        let mut io = TaskIo {
            io: &mut self.io,
            cx,
            input: Some(InputRef {
                input: &mut self.input,
                max_message_size: max,
                mid_message: &mut self.mid_message,
            }),
            write_waited: &mut self.write_waited,
        };
        match context.read(&mut io) {
            Ok(message) => Poll::Ready(Some(Ok(message))),
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.release_if_quiet();
                Poll::Pending
            }
            Err(e) => {
                self.ended = true;
                match e {
                    WsError::AlreadyClosed | WsError::ConnectionClosed => Poll::Ready(None),
                    e => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }

    /// Reads what the socket has into a new input; `Ok(false)` at the end of the stream.
    fn poll_first_bytes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        // Uninitialized: most reads find nothing, and zeroing 4 KiB each time is not free.
        let mut chunk = [MaybeUninit::<u8>::uninit(); SOCKET_READ_CHUNK];
        let mut chunk = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut chunk))?;
        if chunk.filled().is_empty() {
            return Poll::Ready(Ok(false));
        }
        let mut input = Box::<Input>::default();
        input.bytes.extend_from_slice(chunk.filled());
        input.scan(self.max_message_size as usize, &mut self.mid_message);
        self.input = Some(input);
        Poll::Ready(Ok(true))
    }

    /// Drops tungstenite's state when it holds nothing: it has read every byte it was
    /// given (only whole frames are), no message is half-received, no reply waits for
    /// the socket and the connection is open.
    fn release_if_quiet(&mut self) {
        let open = self
            .context
            .as_ref()
            .is_some_and(|c| c.can_read() && c.can_write());
        if open && !self.mid_message && !self.write_waited && self.input.is_none() {
            self.context = None;
        }
    }

    /// Sends a close frame (or answers the peer's) and writes it out.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), WsError> {
        let max = self.max_message_size as usize;
        let context = self.context.get_or_insert_with(|| {
            Box::new(WebSocketContext::new(Role::Server, Some(config(max))))
        });
        let mut frame = Some(frame);
        let mut write_waited = false;
        poll_fn(|cx| {
            let mut io = TaskIo {
                io: &mut self.io,
                cx,
                input: None,
                write_waited: &mut write_waited,
            };
            // The first call queues the close frame; later ones only flush it.
            let result = match frame.take() {
                Some(frame) => context.close(&mut io, frame),
                None => context.flush(&mut io),
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

/// Where the client's bytes wait until they form whole frames: whole frames in
/// `start..whole`, then the start of one still arriving.
#[derive(Default)]
struct Input {
    bytes: Vec<u8>,
    start: usize,
    whole: usize,
}

/// The input as one read sees it.
struct InputRef<'a> {
    input: &'a mut Option<Box<Input>>,
    max_message_size: usize,
    mid_message: &'a mut bool,
}

impl Input {
    /// Moves `whole` past every frame now complete in the buffer; tells whether the last
    /// data frame among them left its message unfinished.
    fn scan(&mut self, max_message_size: usize, mid_message: &mut bool) {
        while let Some(end) = frame_end(&self.bytes[self.whole..], max_message_size) {
            let first = self.bytes[self.whole];
            let opcode = first & 0x0f;
            if opcode <= 0x2 {
                // Continuation, text or binary: the message ends with a final frame.
                *mid_message = first & 0x80 == 0;
            }
            self.whole += end;
        }
    }
}

/// The length of the frame at the start of `buf` if it is all there, or of its header
/// alone if the frame is larger than `max` (tungstenite then refuses it at once, without
/// waiting for a payload it would not accept). `None` if more bytes are needed.
fn frame_end(buf: &[u8], max: usize) -> Option<usize> {
    let second = *buf.get(1)?;
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    let (length_bytes, length) = match second & 0x7f {
        126 => (
            2,
            u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
        ),
        127 => (8, u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
        short => (0, u64::from(short)),
    };
    let header = 2 + length_bytes + mask;
    if buf.len() < header {
        return None;
    }
    if length > max as u64 {
        return Some(header);
    }
    let end = header + length as usize;
    (buf.len() >= end).then_some(end)
}

/// The socket as tungstenite's blocking `Read + Write`, for one poll: "would block"
/// means the task's context is registered for wake-up. Reads hand over whole frames
/// only.
struct TaskIo<'a, 'b, S> {
    io: &'a mut WireIo<S>,
    cx: &'a mut Context<'b>,
    input: Option<InputRef<'a>>,
    write_waited: &'a mut bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Read for TaskIo<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(state) = self.input.as_mut() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let input = state.input.get_or_insert_with(Box::default);
        while input.whole == input.start {
            // Only the start of a frame is left: move it to the front, so the buffer
            // holds at most one frame and one chunk however long the client streams.
            if input.start > 0 {
                input.bytes.drain(..input.start);
                (input.start, input.whole) = (0, 0);
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); SOCKET_READ_CHUNK];
            let mut chunk = ReadBuf::uninit(&mut chunk);
            let polled = Pin::new(&mut *self.io).poll_read(self.cx, &mut chunk);
            if let Poll::Ready(Ok(())) = polled {
                if !chunk.filled().is_empty() {
                    input.bytes.extend_from_slice(chunk.filled());
                    input.scan(state.max_message_size, state.mid_message);
                    continue;
                }
            }
            // Nothing more for now: an empty input holds no memory.
            if input.bytes.is_empty() {
                *state.input = None;
            }
            return match polled {
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                Poll::Ready(Err(e)) => Err(e),
                // The end of the stream; a frame cut short by it is lost with it.
                Poll::Ready(Ok(())) => Ok(0),
            };
        }
        let n = buf.len().min(input.whole - input.start);
        buf[..n].copy_from_slice(&input.bytes[input.start..input.start + n]);
        input.start += n;
        if input.start == input.bytes.len() {
            // Everything read is handed over: nothing waits, nothing is held.
            *state.input = None;
        }
        Ok(n)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Write for TaskIo<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => {
                *self.write_waited = true;
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(result) => result,
            Poll::Pending => {
                *self.write_waited = true;
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::frame_end;

    #[test]
    fn frames_are_whole_only_with_all_their_bytes() {
        // A masked text frame of 3 bytes: 2 header + 4 mask + 3 payload.
        let frame = [0x81, 0x83, 1, 2, 3, 4, b'a', b'b', b'c'];
        for cut in 0..frame.len() {
            assert_eq!(frame_end(&frame[..cut], 1000), None, "cut at {cut}");
        }
        assert_eq!(frame_end(&frame, 1000), Some(9));
        // 16-bit and 64-bit lengths.
        let mut medium = vec![0x81, 0xfe, 0x01, 0x00, 0, 0, 0, 0];
        medium.resize(8 + 256, b'x');
        assert_eq!(frame_end(&medium, 1000), Some(264));
        assert_eq!(frame_end(&medium[..263], 1000), None);
        let long = [0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9];
        assert_eq!(
            frame_end(&long, 1000),
            Some(14),
            "a frame over the limit is handed over by its header, to be refused"
        );
    }
}
