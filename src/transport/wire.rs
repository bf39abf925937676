//! The bytes a connection writes: server messages framed once, shared by every socket
//! that sends them, and the socket wrapper that writes them with vectored writes.
//!
//! Server-to-client frames are unmasked, so a publication's frame is the same bytes for
//! every subscriber: it is built once (header included) and each socket only queues a
//! reference to it. tungstenite still reads the client's frames and answers pings and
//! closes; whatever it writes joins the same ordered queue, so frames never interleave.

use crate::metrics::Stamp;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::Bytes;

/// Bytes kept free in front of a message being built, for its frame header (at most
/// 10 bytes for an unmasked frame), so framing needs no copy.
pub(crate) const HEADER_ROOM: usize = 10;

/// A complete WebSocket text frame holding one server message.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    bytes: Bytes,
    header_len: u8,
    /// When the host made this message, for the publish-to-write latency; `None` for
    /// Herald's own replies. It sits in padding: a frame is no larger for it.
    stamp: Option<Stamp>,
}

impl Frame {
    /// Frames a message built after [`HEADER_ROOM`] bytes of room: `buf` is the room
    /// followed by the message's UTF-8 text.
    pub fn from_room(mut buf: Vec<u8>) -> Frame {
        let payload_len = (buf.len() - HEADER_ROOM) as u64;
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        let header_len = header.len(payload_len);
        let start = HEADER_ROOM - header_len;
        header
            .format(payload_len, &mut &mut buf[start..HEADER_ROOM])
            .expect("an unmasked frame header fits in HEADER_ROOM");
        Frame {
            bytes: Bytes::from(buf).slice(start..),
            header_len: header_len as u8,
            stamp: None,
        }
    }

    /// The same frame, stamped with the time the host made its message.
    pub fn stamped(mut self, stamp: Option<Stamp>) -> Frame {
        self.stamp = stamp;
        self
    }

    pub fn stamp(&self) -> Option<Stamp> {
        self.stamp
    }

    /// Frames a copy of `text` (a message that arrived from a broker, say).
    pub fn text(text: &str) -> Frame {
        let mut buf = Vec::with_capacity(HEADER_ROOM + text.len());
        buf.resize(HEADER_ROOM, 0);
        buf.extend_from_slice(text.as_bytes());
        Frame::from_room(buf)
    }

    /// The message text.
    pub fn as_str(&self) -> &str {
        // Frames are built from `&str` or from the protocol's writer, which writes UTF-8.
        std::str::from_utf8(&self.bytes[self.header_len as usize..])
            .expect("frames hold UTF-8 text")
    }

    /// Length of the whole frame, header included.
    pub fn wire_len(&self) -> usize {
        self.bytes.len()
    }

    /// Length of the message text, without the header.
    pub fn text_len(&self) -> usize {
        self.bytes.len() - self.header_len as usize
    }

    /// The whole frame, header included, as it goes on the wire.
    pub fn wire_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes of this frame after its first `written`, which went on the wire
    /// already: raw bytes to write next, not a frame of their own (no text to read).
    pub fn rest_after(&self, written: usize) -> Frame {
        Frame {
            bytes: self.bytes.slice(written..),
            header_len: 0,
            stamp: self.stamp,
        }
    }
}

/// A server ping with no payload.
pub(crate) const PING: Bytes = Bytes::from_static(&[0x89, 0x00]);

/// Most slices handed to one `writev`.
pub(crate) const MAX_IOV: usize = 128;
/// Beyond this many queued control bytes (tungstenite's pongs and close replies),
/// writes through [`AsyncWrite`] wait for the socket; tungstenite then keeps only the
/// latest pong (RFC 6455 §5.5.3), so a peer that pings and never reads holds no more.
const CONTROL_LIMIT: usize = 1024;

/// A connection's socket: reads pass through; every write, a shared frame queued by
/// the connection or a control frame written by tungstenite, joins one ordered queue.
pub(crate) struct WireIo<S> {
    io: S,
    /// What waits to be written, `None` when nothing does: an idle connection (most of
    /// a server's connections) holds no queue and no room for its bookkeeping.
    backlog: Option<Box<Backlog>>,
    /// Bytes were written since the connection last asked, to tell a socket that takes
    /// bytes from a stalled one.
    progressed: bool,
    /// The close frame has been queued: later control writes are dropped.
    close_sent: bool,
}

#[derive(Default)]
struct Backlog {
    queue: VecDeque<Chunk>,
    /// Bytes of the front entry already written.
    front_written: usize,
    queued_bytes: usize,
    /// Bytes of control frames among `queued_bytes`.
    control_bytes: usize,
}

struct Chunk {
    bytes: Bytes,
    /// A message frame, as opposed to a control frame tungstenite wrote (a pong, a
    /// close reply), which must go out even when the messages are dropped.
    message: bool,
}

impl<S> WireIo<S> {
    pub fn new(io: S) -> Self {
        WireIo {
            io,
            backlog: None,
            progressed: false,
            close_sent: false,
        }
    }

    /// Queues a message frame.
    pub fn push_message(&mut self, frame: &Frame) {
        self.push(frame.bytes.clone(), true);
    }

    /// Queues the rest of a frame already started on the wire: like a control frame,
    /// it goes out even when the messages are dropped, so the stream stays well-formed.
    pub fn push_rest(&mut self, rest: &Frame) {
        self.push(rest.bytes.clone(), false);
    }

    /// Queues a control frame.
    pub fn push_control(&mut self, bytes: Bytes) {
        self.push(bytes, false);
    }

    fn backlog(&mut self) -> &mut Backlog {
        self.backlog.get_or_insert_with(Box::default)
    }

    fn push(&mut self, bytes: Bytes, message: bool) {
        let backlog = self.backlog();
        backlog.queued_bytes += bytes.len();
        if !message {
            backlog.control_bytes += bytes.len();
        }
        backlog.queue.push_back(Chunk { bytes, message });
    }

    pub fn reserve(&mut self, entries: usize) {
        if entries > 0 {
            self.backlog().queue.reserve(entries);
        }
    }

    /// Entries not yet written completely.
    pub fn queued(&self) -> usize {
        self.backlog.as_ref().map_or(0, |b| b.queue.len())
    }

    /// Bytes not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.backlog.as_ref().map_or(0, |b| b.queued_bytes)
    }

    fn control_bytes(&self) -> usize {
        self.backlog.as_ref().map_or(0, |b| b.control_bytes)
    }

    /// Whether any byte was written since the last call.
    pub fn take_progress(&mut self) -> bool {
        std::mem::take(&mut self.progressed)
    }

    /// Drops the message frames not yet started; a half-written one stays so the stream
    /// stays well-formed, and control frames stay.
    pub fn discard_unstarted_messages(&mut self) {
        let Some(backlog) = self.backlog.as_mut() else {
            return;
        };
        let mut index = 0;
        let started = backlog.front_written > 0;
        let mut freed = 0;
        backlog.queue.retain(|chunk| {
            let keep = !chunk.message || (index == 0 && started);
            index += 1;
            if !keep {
                freed += chunk.bytes.len();
            }
            keep
        });
        backlog.queued_bytes -= freed;
    }

    fn advance(&mut self, mut written: usize) {
        self.progressed = true;
        let Some(backlog) = self.backlog.as_mut() else {
            return;
        };
        backlog.queued_bytes -= written;
        while written > 0 {
            let front_left = backlog.queue[0].bytes.len() - backlog.front_written;
            if written < front_left {
                backlog.front_written += written;
                return;
            }
            written -= front_left;
            backlog.front_written = 0;
            if let Some(chunk) = backlog.queue.pop_front() {
                if !chunk.message {
                    backlog.control_bytes -= chunk.bytes.len();
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> WireIo<S> {
    /// Writes everything queued; `Ready(Ok)` once the queue is empty and flushed.
    pub fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(backlog) = self.backlog.as_ref().filter(|b| !b.queue.is_empty()) {
            let written = if self.io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let mut count = 0;
                for (slot, chunk) in slices.iter_mut().zip(&backlog.queue) {
                    let start = if count == 0 { backlog.front_written } else { 0 };
                    *slot = IoSlice::new(&chunk.bytes[start..]);
                    count += 1;
                }
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?
            } else {
                let front = &backlog.queue[0].bytes[backlog.front_written..];
                ready!(Pin::new(&mut self.io).poll_write(cx, front))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(written);
        }
        // An idle connection keeps no queue memory; the next batch allocates again.
        self.backlog = None;
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WireIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

/// Where the first close frame in `buf` ends, if there is one. `buf` holds whole
/// unmasked server frames, as tungstenite writes them.
fn close_frame_end(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + 2 <= buf.len() {
        let opcode = buf[at] & 0x0f;
        let (header, len) = match buf[at + 1] & 0x7f {
            126 => (
                4,
                usize::from(u16::from_be_bytes([*buf.get(at + 2)?, *buf.get(at + 3)?])),
            ),
            127 => {
                let bytes: [u8; 8] = buf.get(at + 2..at + 10)?.try_into().ok()?;
                (10, usize::try_from(u64::from_be_bytes(bytes)).ok()?)
            }
            len => (2, usize::from(len)),
        };
        let end = at.checked_add(header)?.checked_add(len)?;
        if opcode == 0x8 {
            return Some(end.min(buf.len()));
        }
        at = end;
    }
    None
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WireIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sent {
            // Nothing follows a close frame on the wire (tungstenite writes a pong it
            // still held after the close frame it was asked to send).
            return Poll::Ready(Ok(buf.len()));
        }
        if this.control_bytes() >= CONTROL_LIMIT {
            ready!(this.poll_send(cx))?;
        }
        let kept = match close_frame_end(buf) {
            Some(end) => {
                this.close_sent = true;
                &buf[..end]
            }
            None => buf,
        };
        this.push_control(Bytes::copy_from_slice(kept));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_short_medium_and_long_texts_in_place() {
        for (len, header) in [(5, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let text = "x".repeat(len);
            let frame = Frame::text(&text);
            let wire = frame.wire_bytes();
            assert_eq!(wire.len(), header + len, "length {len}");
            assert_eq!(wire[0], 0x81, "FIN + text opcode");
            assert_eq!(wire[1] & 0x80, 0, "server frames are unmasked");
            assert_eq!(frame.as_str(), text);
            assert_eq!(frame.text_len(), len);
        }
    }

    #[test]
    fn nothing_follows_a_close_frame() {
        let pong = [0x8a, 0x01, b'p'];
        let close = [0x88, 0x02, 0x03, 0xe8];
        assert_eq!(close_frame_end(&pong), None);
        assert_eq!(
            close_frame_end(&[&pong[..], &close, &pong].concat()),
            Some(7)
        );
        assert_eq!(close_frame_end(&close), Some(4));
    }

    #[test]
    fn advance_tracks_partial_writes_across_entries() {
        let mut wire = WireIo::new(());
        wire.push(Bytes::from_static(b"abc"), true);
        wire.push(Bytes::from_static(b"defg"), true);
        wire.advance(2);
        let front_written = |w: &WireIo<()>| w.backlog.as_ref().map_or(0, |b| b.front_written);
        assert_eq!((wire.queued(), front_written(&wire)), (2, 2));
        wire.advance(3);
        assert_eq!((wire.queued(), front_written(&wire)), (1, 2));
        wire.push(Bytes::from_static(b"hi"), true);
        wire.push_control(Bytes::from_static(b"pong"));
        wire.push(Bytes::from_static(b"jk"), true);
        wire.discard_unstarted_messages();
        assert_eq!(
            wire.queued(),
            2,
            "the half-written message and the control frame stay"
        );
        wire.advance(6);
        assert_eq!((wire.queued(), wire.queued_bytes()), (0, 0));
    }
}
