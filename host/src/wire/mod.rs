//! The wire format of the call channel between a gateway and a node: one
//! long-lived connection, taken over from HTTP/1.1 by an `Upgrade`, on
//! which calls and replies travel as length-prefixed frames. Many calls
//! share the connection at once and are matched to their replies by id, so
//! a burst of calls costs one write and one read on each side instead of an
//! HTTP exchange each. It lives here, below both, because both speak it.
//!
//! Every frame is a little-endian `u32` length of what follows, a tag byte,
//! and a `u64` call id:
//!
//! - a call (`C`, gateway to node): the method name (`u16` length), the
//!   call's budget as name/value pairs (a `u8` count; each a `u8` name
//!   length, name, `u16` value length, value), then the raw params;
//! - a cancel (`X`, gateway to node, no body): the gateway gave up on the
//!   call (its timeout passed), so the node stops it, as it stops a call
//!   whose HTTP client went away;
//! - a reply (node to gateway): `R` with the raw JSON result, `E` with a
//!   JSON-RPC error object that is final, or `U` with one for a call the
//!   node refused before running it (overloaded, draining).

mod writer;

pub use writer::write_frames;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The name the channel is asked for in the `Upgrade` header.
pub const PROTOCOL: &str = "madrpc-calls/1";

/// The path a gateway asks a node to upgrade on.
pub const PATH: &str = "/v1/channel";

/// Bytes of a call frame beyond its params: the method and the budget.
pub const CALL_OVERHEAD: usize = 64 << 10;

/// Bytes of tag and id at the start of every frame.
const HEAD: usize = 1 + 8;

/// A frame's tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// A call, gateway to node.
    Call,
    /// The gateway gave up on a call.
    Cancel,
    /// A result.
    Ok,
    /// A final error.
    Error,
    /// A refusal before the call ran: another node may take it.
    Unavailable,
}

impl Tag {
    fn byte(self) -> u8 {
        match self {
            Tag::Call => b'C',
            Tag::Cancel => b'X',
            Tag::Ok => b'R',
            Tag::Error => b'E',
            Tag::Unavailable => b'U',
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            b'C' => Tag::Call,
            b'X' => Tag::Cancel,
            b'R' => Tag::Ok,
            b'E' => Tag::Error,
            b'U' => Tag::Unavailable,
            _ => return None,
        })
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed or closed in the middle of a frame.
    #[error("the channel broke: {0}")]
    Io(#[from] std::io::Error),
    /// A frame started and did not finish in time.
    #[error("a frame stalled for more than {} ms halfway", .0.as_millis())]
    Stalled(std::time::Duration),
    /// The bytes are not a frame of this protocol.
    #[error("the channel carried {0}, which is not a madrpc call frame")]
    Malformed(&'static str),
}

/// One frame as read: its tag, its call id, and the rest.
#[derive(Debug)]
pub struct Frame {
    /// What the frame is.
    pub tag: Tag,
    /// The call it belongs to.
    pub id: u64,
    /// Everything after the id. Empty for an oversized frame.
    pub body: Bytes,
    /// Set when the frame was longer than the reader's limit: its body was
    /// skipped, and this is its length.
    pub oversized: Option<usize>,
}

/// A call frame's contents.
#[derive(Debug)]
pub struct Call {
    /// The function called.
    pub method: String,
    /// The call's budget, as the header pairs [`crate::rpc::CallBudget`]
    /// reads.
    pub meta: Vec<(String, String)>,
    /// The raw params.
    pub params: Bytes,
}

/// Encodes a call frame's head (everything but the params, which follow it
/// on the wire as they are). A method name or budget entry longer than its
/// length field is cut short; the frame's length counts what is written,
/// so the stream stays in step whatever the input.
pub fn call_head(id: u64, method: &str, meta: &[(&str, String)], params_len: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + method.len());
    out.put_u32_le(0);
    out.put_u8(Tag::Call.byte());
    out.put_u64_le(id);
    put_short(&mut out, method);
    out.put_u8(meta.len().min(255) as u8);
    for (name, value) in meta.iter().take(255) {
        // Budget names are this crate's header names, all short.
        out.put_u8(name.len().min(255) as u8);
        out.put_slice(&name.as_bytes()[..name.len().min(255)]);
        put_short(&mut out, value);
    }
    let body_len = out.len() - 4 + params_len;
    out[..4].copy_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes());
    out.freeze()
}

/// Writes `text` with a `u16` length, cut at a character boundary when it
/// is longer.
fn put_short(out: &mut BytesMut, text: &str) {
    let mut len = text.len().min(usize::from(u16::MAX));
    while !text.is_char_boundary(len) {
        len -= 1;
    }
    out.put_u16_le(len as u16);
    out.put_slice(&text.as_bytes()[..len]);
}

/// Encodes a frame's head; the body follows it as it is.
pub fn frame_head(tag: Tag, id: u64, body_len: usize) -> [u8; 4 + HEAD] {
    let mut out = [0u8; 4 + HEAD];
    let len = u32::try_from(HEAD + body_len).unwrap_or(u32::MAX);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4] = tag.byte();
    out[5..].copy_from_slice(&id.to_le_bytes());
    out
}

/// Reads a call frame's body.
pub fn parse_call(mut body: Bytes) -> Result<Call, WireError> {
    let method = take_short(&mut body)?;
    let method = String::from_utf8(method.to_vec())
        .map_err(|_| WireError::Malformed("a method name that is not UTF-8"))?;
    if body.is_empty() {
        return Err(WireError::Malformed("a call without its budget"));
    }
    let count = body.get_u8();
    let mut meta = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        if body.is_empty() {
            return Err(WireError::Malformed("a budget cut short"));
        }
        let name_len = usize::from(body.get_u8());
        if body.len() < name_len {
            return Err(WireError::Malformed("a budget cut short"));
        }
        let name = body.split_to(name_len);
        let value = take_short(&mut body)?;
        let (Ok(name), Ok(value)) = (std::str::from_utf8(&name), std::str::from_utf8(&value))
        else {
            return Err(WireError::Malformed("a budget that is not UTF-8"));
        };
        meta.push((name.to_owned(), value.to_owned()));
    }
    Ok(Call {
        method,
        meta,
        params: body,
    })
}

fn take_short(body: &mut Bytes) -> Result<Bytes, WireError> {
    if body.len() < 2 {
        return Err(WireError::Malformed("a frame cut short"));
    }
    let len = usize::from(body.get_u16_le());
    if body.len() < len {
        return Err(WireError::Malformed("a frame cut short"));
    }
    Ok(body.split_to(len))
}

/// Reads frames from one side of the channel.
pub struct FrameReader<R> {
    io: R,
    buffer: BytesMut,
    stall: Option<std::time::Duration>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader over `io`.
    pub fn new(io: R) -> Self {
        Self {
            io,
            buffer: BytesMut::with_capacity(64 << 10),
            stall: None,
        }
    }

    /// Bounds how long a frame may take to arrive once its first byte
    /// has: a peer that sends half a frame and stops cannot hold the
    /// channel. Between frames the channel may stay quiet for good.
    pub fn with_stall(mut self, stall: std::time::Duration) -> Self {
        self.stall = Some(stall);
        self
    }

    /// The next frame, or `None` when the peer closed the connection
    /// between frames. A frame whose body is longer than `limit` bytes is
    /// skipped and returned with [`Frame::oversized`] set, so the reader
    /// stays in step with the stream.
    pub async fn next(&mut self, limit: usize) -> Result<Option<Frame>, WireError> {
        if !self.fill(1).await? {
            return Ok(None);
        }
        match self.stall {
            None => self.rest(limit).await,
            Some(stall) => tokio::time::timeout(stall, self.rest(limit))
                .await
                .unwrap_or(Err(WireError::Stalled(stall))),
        }
    }

    /// The rest of a frame whose first byte has arrived.
    async fn rest(&mut self, limit: usize) -> Result<Option<Frame>, WireError> {
        if !self.fill(4 + HEAD).await? {
            return Ok(None);
        }
        let len = u32::from_le_bytes([
            self.buffer[0],
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
        ]) as usize;
        if len < HEAD {
            return Err(WireError::Malformed("a frame shorter than its head"));
        }
        let tag =
            Tag::from_byte(self.buffer[4]).ok_or(WireError::Malformed("an unknown frame tag"))?;
        let id = u64::from_le_bytes(self.buffer[5..4 + HEAD].try_into().unwrap_or_default());
        let body_len = len - HEAD;
        if body_len > limit {
            self.buffer.advance(4 + HEAD);
            self.skip(body_len).await?;
            return Ok(Some(Frame {
                tag,
                id,
                body: Bytes::new(),
                oversized: Some(body_len),
            }));
        }
        if !self.fill(4 + len).await? {
            return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        self.buffer.advance(4 + HEAD);
        let body = self.buffer.split_to(body_len).freeze();
        Ok(Some(Frame {
            tag,
            id,
            body,
            oversized: None,
        }))
    }

    /// Whether a whole frame is already buffered: the next [`Self::next`]
    /// returns it without waiting.
    pub fn has_frame(&self) -> bool {
        let Some(len) = self.buffer.get(..4) else {
            return false;
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        self.buffer.len() >= 4 + len
    }

    /// Reads until `want` bytes are buffered. False when the peer closed
    /// before any byte of a new frame arrived.
    async fn fill(&mut self, want: usize) -> Result<bool, WireError> {
        if self.buffer.len() < want {
            self.buffer.reserve(want - self.buffer.len());
        }
        while self.buffer.len() < want {
            if self.io.read_buf(&mut self.buffer).await? == 0 {
                if self.buffer.is_empty() {
                    return Ok(false);
                }
                return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        Ok(true)
    }

    async fn skip(&mut self, mut left: usize) -> Result<(), WireError> {
        loop {
            let here = left.min(self.buffer.len());
            self.buffer.advance(here);
            left -= here;
            if left == 0 {
                return Ok(());
            }
            if self.io.read_buf(&mut self.buffer).await? == 0 {
                return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_and_a_reply_round_trip_and_oversized_frames_are_skipped() {
        let params = Bytes::from_static(br#"[1,2]"#);
        let meta = [("x-madrpc-depth", "3".to_owned())];
        let head = call_head(7, "add", &meta, params.len());
        let big = frame_head(Tag::Ok, 8, 100);
        let reply = frame_head(Tag::Error, 9, 2);
        let mut wire = head.to_vec();
        wire.extend_from_slice(&params);
        wire.extend_from_slice(&big);
        wire.extend_from_slice(&[b'x'; 100]);
        wire.extend_from_slice(&reply);
        wire.extend_from_slice(b"{}");
        let mut reader = FrameReader::new(&wire[..]);
        let frame = reader.next(1000).await.unwrap().unwrap();
        assert_eq!((frame.tag, frame.id), (Tag::Call, 7));
        let call = parse_call(frame.body).unwrap();
        assert_eq!(call.method, "add");
        assert_eq!(
            call.meta,
            vec![("x-madrpc-depth".to_owned(), "3".to_owned())]
        );
        assert_eq!(&call.params[..], b"[1,2]");
        let frame = reader.next(50).await.unwrap().unwrap();
        assert_eq!(
            (frame.tag, frame.id, frame.oversized),
            (Tag::Ok, 8, Some(100))
        );
        let frame = reader.next(50).await.unwrap().unwrap();
        assert_eq!(
            (frame.tag, frame.id, &frame.body[..]),
            (Tag::Error, 9, &b"{}"[..])
        );
        assert!(reader.next(50).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_truncated_or_foreign_stream_is_an_error() {
        let mut reader = FrameReader::new(&b"HTTP/1.1 200 OK\r\n"[..]);
        assert!(matches!(
            reader.next(1000).await,
            Err(WireError::Malformed(_))
        ));
        // A head that promises params that never come.
        let head = call_head(1, "add", &[], 10);
        let mut reader = FrameReader::new(&head[..]);
        assert!(matches!(reader.next(1000).await, Err(WireError::Io(_))));
        // A call body cut inside its method name.
        assert!(parse_call(Bytes::from_static(&[5, 0, b'a'])).is_err());
    }

    #[tokio::test]
    async fn an_overlong_method_name_is_cut_and_the_stream_stays_in_step() {
        let method = "m".repeat(70_000);
        let mut wire = call_head(1, &method, &[], 2).to_vec();
        wire.extend_from_slice(b"[]");
        wire.extend_from_slice(&frame_head(Tag::Cancel, 2, 0));
        let mut reader = FrameReader::new(&wire[..]);
        let call = parse_call(reader.next(1 << 20).await.unwrap().unwrap().body).unwrap();
        assert_eq!(call.method.len(), usize::from(u16::MAX));
        assert_eq!(&call.params[..], b"[]");
        let next = reader.next(1 << 20).await.unwrap().unwrap();
        assert_eq!((next.tag, next.id), (Tag::Cancel, 2));
    }
}
