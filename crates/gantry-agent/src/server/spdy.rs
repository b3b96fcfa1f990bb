//! SPDY/3.1 framing, as kubectl's fallback streaming transport speaks it (exec, attach, port-forward).
//!
//! Only what those clients use: streams opened by SYN_STREAM and answered by SYN_REPLY, data frames with FIN,
//! RST_STREAM, PING (echoed), GOAWAY; SETTINGS and WINDOW_UPDATE are read and ignored, because the peers
//! (Go's spdystream) neither send nor need flow-control updates. Header blocks are zlib-compressed with the
//! SPDY/3 dictionary, one compression context per direction for the whole connection.
//!
//! [`SpdyConnection`] runs a connection over any byte stream: a reader task turns frames into per-stream
//! channels, a writer task owns the write half and the compressor.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Failures of the SPDY layer.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// The peer sent something that is not SPDY/3.
    #[error("SPDY protocol error: {0}")]
    Protocol(&'static str),
    /// A header block could not be compressed or decompressed.
    #[error("SPDY header compression: {0}")]
    Compression(String),
    /// The connection is gone.
    #[error("SPDY connection closed")]
    Closed,
    /// Reading or writing the connection failed.
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Header names (lowercase) and values; a name with several values carries them NUL-separated, as on the wire.
pub type Headers = Vec<(String, String)>;

/// The value of header `name` (case-insensitive), if present.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

const VERSION: u16 = 3;
const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;
const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// Frame payloads are at most 2^24 - 1 bytes; data is cut well below that.
const MAX_DATA_CHUNK: usize = 32 * 1024;
/// Control frames larger than this are refused rather than buffered.
const MAX_FRAME: usize = 1 << 24;

/// RST_STREAM status: the stream was cancelled.
pub const RST_CANCEL: u32 = 5;
/// RST_STREAM status: a protocol error on the stream.
pub const RST_PROTOCOL_ERROR: u32 = 1;

/// One SPDY/3 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// Stream ID (odd from the client, even from the server).
        stream_id: u32,
        /// Stream it is associated with (0 for none).
        associated_to: u32,
        /// Priority, 0 (highest) to 7.
        priority: u8,
        /// The sender sends nothing more on it.
        fin: bool,
        /// The receiver must not send on it.
        unidirectional: bool,
        /// Its headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// Stream ID.
        stream_id: u32,
        /// The sender sends nothing more on it.
        fin: bool,
        /// Reply headers.
        headers: Headers,
    },
    /// Aborts a stream.
    RstStream {
        /// Stream ID.
        stream_id: u32,
        /// Why.
        status: u32,
    },
    /// Connection settings (ignored on receipt).
    Settings {
        /// `(flags, id, value)` entries.
        entries: Vec<(u8, u32, u32)>,
    },
    /// A ping, echoed by the receiver.
    Ping {
        /// Its ID.
        id: u32,
    },
    /// The sender closes the connection after `last_good_stream_id`.
    GoAway {
        /// The last stream the sender processed.
        last_good_stream_id: u32,
        /// Why.
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// Stream ID.
        stream_id: u32,
        /// The sender sends nothing more on it.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// Flow-control credit (ignored on receipt).
    WindowUpdate {
        /// Stream ID.
        stream_id: u32,
        /// Bytes added to the window.
        delta: u32,
    },
    /// Stream data.
    Data {
        /// Stream ID.
        stream_id: u32,
        /// The sender sends nothing more on it.
        fin: bool,
        /// The bytes.
        data: Bytes,
    },
}

/// The SPDY/3 header compression dictionary: length-prefixed header names and common values, then a run of
/// frequent value fragments.
fn dictionary() -> &'static [u8] {
    static DICTIONARY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICTIONARY.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &[&str] = &[
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
            "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
            "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        ];
        let mut dict = Vec::with_capacity(1423);
        for word in WORDS {
            dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
            dict.extend_from_slice(word.as_bytes());
        }
        for piece in TAIL {
            dict.extend_from_slice(piece.as_bytes());
        }
        dict
    })
}

/// Compresses header blocks for one direction of a connection.
pub struct HeaderCompressor {
    zlib: Compress,
}

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCompressor {
    /// A fresh compression context primed with the SPDY/3 dictionary.
    pub fn new() -> HeaderCompressor {
        let mut zlib = Compress::new(Compression::default(), true);
        // Setting the dictionary on a fresh stream cannot fail; were it to, the stream stays valid without it
        // (the header then carries no dictionary ID, which every inflater accepts).
        let _ = zlib.set_dictionary(dictionary());
        HeaderCompressor { zlib }
    }

    /// Encodes and compresses a header block (sync-flushed, so the peer can decode it at once).
    pub fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut block = Vec::new();
        block.put_u32(headers.len() as u32);
        for (name, value) in headers {
            block.put_u32(name.len() as u32);
            block.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            block.put_u32(value.len() as u32);
            block.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(block.len() + 64);
            }
            let before = self.zlib.total_in();
            self.zlib
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            consumed += (self.zlib.total_in() - before) as usize;
            // A sync flush is complete once all input is taken and the output was not filled up.
            if consumed >= block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Decompresses header blocks for one direction of a connection.
pub struct HeaderDecompressor {
    zlib: Decompress,
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    /// A fresh decompression context (the dictionary is supplied when the stream asks for it).
    pub fn new() -> HeaderDecompressor {
        HeaderDecompressor { zlib: Decompress::new(true) }
    }

    /// Decompresses and decodes one header block.
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 256);
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let (before_in, before_out) = (self.zlib.total_in(), self.zlib.total_out());
            let result = self.zlib.decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.zlib.total_in() - before_in) as usize;
            let progressed = self.zlib.total_in() != before_in || self.zlib.total_out() != before_out;
            match result {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {
                    if consumed >= compressed.len() && out.len() < out.capacity() {
                        break;
                    }
                    if !progressed && out.len() < out.capacity() {
                        return Err(SpdyError::Compression("truncated header block".into()));
                    }
                }
                Err(err) if err.needs_dictionary().is_some() => {
                    self.zlib.set_dictionary(dictionary()).map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(err) => return Err(SpdyError::Compression(err.to_string())),
            }
        }
        decode_header_block(&out)
    }
}

fn decode_header_block(mut block: &[u8]) -> Result<Headers, SpdyError> {
    let truncated = SpdyError::Protocol("truncated header block");
    let take = |block: &mut &[u8]| -> Result<String, SpdyError> {
        if block.len() < 4 {
            return Err(SpdyError::Protocol("truncated header block"));
        }
        let len = block.get_u32() as usize;
        if block.len() < len {
            return Err(SpdyError::Protocol("truncated header block"));
        }
        let text = String::from_utf8_lossy(&block[..len]).into_owned();
        block.advance(len);
        Ok(text)
    };
    if block.len() < 4 {
        return Err(truncated);
    }
    let count = block.get_u32() as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = take(&mut block)?;
        let value = take(&mut block)?;
        headers.push((name.to_ascii_lowercase(), value));
    }
    Ok(headers)
}

/// Encodes frames for one direction of a connection.
#[derive(Default)]
pub struct FrameEncoder {
    headers: HeaderCompressor,
}

impl FrameEncoder {
    /// Appends the wire form of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        let control = |kind: u16, flags: u8, payload: &[u8], out: &mut BytesMut| {
            out.put_u16(0x8000 | VERSION);
            out.put_u16(kind);
            out.put_u32((u32::from(flags) << 24) | payload.len() as u32);
            out.extend_from_slice(payload);
        };
        let fin = |fin: bool| if fin { FLAG_FIN } else { 0 };
        match frame {
            Frame::SynStream { stream_id, associated_to, priority, fin: f, unidirectional, headers } => {
                let mut payload = Vec::new();
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.put_u32(associated_to & 0x7fff_ffff);
                payload.put_u8((priority & 0x7) << 5);
                payload.put_u8(0);
                payload.extend_from_slice(&self.headers.compress(headers)?);
                let flags = fin(*f) | if *unidirectional { FLAG_UNIDIRECTIONAL } else { 0 };
                control(TYPE_SYN_STREAM, flags, &payload, out);
            }
            Frame::SynReply { stream_id, fin: f, headers } | Frame::Headers { stream_id, fin: f, headers } => {
                let kind = if matches!(frame, Frame::SynReply { .. }) { TYPE_SYN_REPLY } else { TYPE_HEADERS };
                let mut payload = Vec::new();
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.extend_from_slice(&self.headers.compress(headers)?);
                control(kind, fin(*f), &payload, out);
            }
            Frame::RstStream { stream_id, status } => {
                let mut payload = Vec::new();
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.put_u32(*status);
                control(TYPE_RST_STREAM, 0, &payload, out);
            }
            Frame::Settings { entries } => {
                let mut payload = Vec::new();
                payload.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    payload.put_u32((u32::from(*flags) << 24) | (id & 0x00ff_ffff));
                    payload.put_u32(*value);
                }
                control(TYPE_SETTINGS, 0, &payload, out);
            }
            Frame::Ping { id } => control(TYPE_PING, 0, &id.to_be_bytes(), out),
            Frame::GoAway { last_good_stream_id, status } => {
                let mut payload = Vec::new();
                payload.put_u32(last_good_stream_id & 0x7fff_ffff);
                payload.put_u32(*status);
                control(TYPE_GOAWAY, 0, &payload, out);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut payload = Vec::new();
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.put_u32(delta & 0x7fff_ffff);
                control(TYPE_WINDOW_UPDATE, 0, &payload, out);
            }
            Frame::Data { stream_id, fin: f, data } => {
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32((u32::from(fin(*f)) << 24) | data.len() as u32);
                out.extend_from_slice(data);
            }
        }
        Ok(())
    }
}

/// Decodes frames for one direction of a connection.
#[derive(Default)]
pub struct FrameDecoder {
    headers: HeaderDecompressor,
}

impl FrameDecoder {
    /// Takes one frame off the front of `buf`, or `None` if more bytes are needed. Unknown control frame types
    /// are skipped, as the protocol asks.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        loop {
            if buf.len() < 8 {
                return Ok(None);
            }
            let length = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
            if length >= MAX_FRAME {
                return Err(SpdyError::Protocol("frame too large"));
            }
            if buf.len() < 8 + length {
                return Ok(None);
            }
            let mut head = buf.split_to(8);
            let payload = buf.split_to(length).freeze();
            let first = head.get_u32();
            let flags = head.get_u8();
            let fin = flags & FLAG_FIN != 0;
            if first & 0x8000_0000 == 0 {
                return Ok(Some(Frame::Data { stream_id: first & 0x7fff_ffff, fin, data: payload }));
            }
            if (first >> 16) & 0x7fff != u32::from(VERSION) {
                return Err(SpdyError::Protocol("unsupported SPDY version"));
            }
            if let Some(frame) = self.control(first as u16, flags, payload)? {
                return Ok(Some(frame));
            }
        }
    }

    fn control(&mut self, kind: u16, flags: u8, mut p: Bytes) -> Result<Option<Frame>, SpdyError> {
        let need = |p: &Bytes, n: usize| {
            if p.len() < n { Err(SpdyError::Protocol("control frame too short")) } else { Ok(()) }
        };
        let fin = flags & FLAG_FIN != 0;
        let frame = match kind {
            TYPE_SYN_STREAM => {
                need(&p, 10)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                p.advance(1);
                let headers = self.headers.decompress(&p)?;
                let unidirectional = flags & FLAG_UNIDIRECTIONAL != 0;
                Frame::SynStream { stream_id, associated_to, priority, fin, unidirectional, headers }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                need(&p, 4)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let headers = self.headers.decompress(&p)?;
                if kind == TYPE_SYN_REPLY {
                    Frame::SynReply { stream_id, fin, headers }
                } else {
                    Frame::Headers { stream_id, fin, headers }
                }
            }
            TYPE_RST_STREAM => {
                need(&p, 8)?;
                Frame::RstStream { stream_id: p.get_u32() & 0x7fff_ffff, status: p.get_u32() }
            }
            TYPE_SETTINGS => {
                need(&p, 4)?;
                let count = p.get_u32() as usize;
                need(&p, count.saturating_mul(8))?;
                let entries = (0..count)
                    .map(|_| {
                        let head = p.get_u32();
                        ((head >> 24) as u8, head & 0x00ff_ffff, p.get_u32())
                    })
                    .collect();
                Frame::Settings { entries }
            }
            TYPE_PING => {
                need(&p, 4)?;
                Frame::Ping { id: p.get_u32() }
            }
            TYPE_GOAWAY => {
                need(&p, 4)?;
                let last_good_stream_id = p.get_u32() & 0x7fff_ffff;
                let status = if p.len() >= 4 { p.get_u32() } else { 0 };
                Frame::GoAway { last_good_stream_id, status }
            }
            TYPE_WINDOW_UPDATE => {
                need(&p, 8)?;
                Frame::WindowUpdate { stream_id: p.get_u32() & 0x7fff_ffff, delta: p.get_u32() & 0x7fff_ffff }
            }
            _ => return Ok(None),
        };
        Ok(Some(frame))
    }
}

enum Outgoing {
    Frame(Frame),
    /// Flush, answer, and stop writing.
    Close(oneshot::Sender<()>),
}

/// Which end of the connection this is: it decides the parity of the stream IDs it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Opens odd stream IDs.
    Client,
    /// Opens even stream IDs.
    Server,
}

/// The sending side of a connection, shared by its streams.
#[derive(Clone)]
struct Sender {
    frames: mpsc::Sender<Outgoing>,
}

impl Sender {
    async fn send(&self, frame: Frame) -> Result<(), SpdyError> {
        self.frames.send(Outgoing::Frame(frame)).await.map_err(|_| SpdyError::Closed)
    }
}

/// One stream of a connection: its headers, the data the peer sends on it, and a handle to send on it.
pub struct SpdyStream {
    /// Stream ID.
    pub id: u32,
    /// The headers it was opened with (or, for a stream we opened, those of the reply).
    pub headers: Headers,
    data: mpsc::Receiver<Bytes>,
    writer: StreamWriter,
}

impl std::fmt::Debug for SpdyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpdyStream").field("id", &self.id).field("headers", &self.headers).finish_non_exhaustive()
    }
}

/// Sends on one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    sender: Sender,
}

impl StreamWriter {
    /// Sends `data` on the stream, cut into frames of a reasonable size.
    pub async fn write(&self, data: &[u8]) -> Result<(), SpdyError> {
        for chunk in data.chunks(MAX_DATA_CHUNK) {
            let frame = Frame::Data { stream_id: self.id, fin: false, data: Bytes::copy_from_slice(chunk) };
            self.sender.send(frame).await?;
        }
        Ok(())
    }

    /// Half-closes the stream: the peer reads its end.
    pub async fn close(&self) -> Result<(), SpdyError> {
        self.sender.send(Frame::Data { stream_id: self.id, fin: true, data: Bytes::new() }).await
    }

    /// Aborts the stream.
    pub async fn reset(&self, status: u32) -> Result<(), SpdyError> {
        self.sender.send(Frame::RstStream { stream_id: self.id, status }).await
    }
}

impl SpdyStream {
    /// The value of header `name`, if the stream carries it.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The next piece of data from the peer; `None` once it half-closed the stream (or the connection ended).
    pub async fn read(&mut self) -> Option<Bytes> {
        self.data.recv().await
    }

    /// A handle that sends on this stream.
    pub fn writer(&self) -> StreamWriter {
        self.writer.clone()
    }

    /// Splits the stream into its receiving and sending halves.
    pub fn split(self) -> (mpsc::Receiver<Bytes>, StreamWriter) {
        (self.data, self.writer)
    }
}

type StreamTable = Arc<std::sync::Mutex<HashMap<u32, mpsc::Sender<Bytes>>>>;
type PendingReplies = Arc<std::sync::Mutex<HashMap<u32, oneshot::Sender<Headers>>>>;

/// A SPDY connection over a byte stream. Dropping it stops both its tasks.
pub struct SpdyConnection {
    incoming: mpsc::Receiver<SpdyStream>,
    sender: Sender,
    streams: StreamTable,
    replies: PendingReplies,
    next_id: AtomicU32,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
}

/// Data frames queued per stream before the connection's reader waits for the stream's consumer.
const STREAM_BUFFER: usize = 64;

impl SpdyConnection {
    /// Starts a connection on `io`: the reader and writer tasks run until the connection ends or this value is
    /// dropped.
    pub fn new<T>(io: T, role: Role) -> SpdyConnection
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(io);
        let (frames_tx, frames_rx) = mpsc::channel(256);
        let sender = Sender { frames: frames_tx };
        let (incoming_tx, incoming_rx) = mpsc::channel(16);
        let streams: StreamTable = Arc::default();
        let replies: PendingReplies = Arc::default();
        let writer = tokio::spawn(write_loop(write_half, frames_rx));
        let reader =
            tokio::spawn(read_loop(read_half, sender.clone(), Arc::clone(&streams), Arc::clone(&replies), incoming_tx));
        SpdyConnection {
            incoming: incoming_rx,
            sender,
            streams,
            replies,
            next_id: AtomicU32::new(if role == Role::Client { 1 } else { 2 }),
            reader,
            writer: Some(writer),
        }
    }

    /// The next stream the peer opens (already accepted with an empty SYN_REPLY); `None` once the connection
    /// ended.
    pub async fn accept(&mut self) -> Option<SpdyStream> {
        self.incoming.recv().await
    }

    /// Opens a stream with `headers` and waits for the peer's reply.
    pub async fn open(&self, headers: Headers) -> Result<SpdyStream, SpdyError> {
        let id = self.next_id.fetch_add(2, Ordering::Relaxed);
        let (data_tx, data_rx) = mpsc::channel(STREAM_BUFFER);
        let (reply_tx, reply_rx) = oneshot::channel();
        lock(&self.streams).insert(id, data_tx);
        lock(&self.replies).insert(id, reply_tx);
        let frame = Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers,
        };
        self.sender.send(frame).await?;
        let headers = reply_rx.await.map_err(|_| SpdyError::Closed)?;
        Ok(SpdyStream { id, headers, data: data_rx, writer: StreamWriter { id, sender: self.sender.clone() } })
    }

    /// Flushes what was queued, sends GOAWAY and closes the write side; the reader stops with the value.
    pub async fn close(mut self) {
        let _ = self.sender.send(Frame::GoAway { last_good_stream_id: 0, status: 0 }).await;
        let (done_tx, done_rx) = oneshot::channel();
        if self.sender.frames.send(Outgoing::Close(done_tx)).await.is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), done_rx).await;
        }
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
    }
}

impl Drop for SpdyConnection {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn write_loop<W: AsyncWrite>(io: W, mut frames: mpsc::Receiver<Outgoing>) {
    let mut io = std::pin::pin!(io);
    let mut encoder = FrameEncoder::default();
    let mut buf = BytesMut::new();
    while let Some(first) = frames.recv().await {
        let mut next = Some(first);
        let mut close = None;
        // Batch what is queued into one write.
        while let Some(item) = next.take() {
            match item {
                Outgoing::Frame(frame) => {
                    if let Err(err) = encoder.encode(&frame, &mut buf) {
                        tracing::debug!(error = %err, "cannot encode a SPDY frame");
                        return;
                    }
                }
                Outgoing::Close(done) => {
                    close = Some(done);
                    break;
                }
            }
            if buf.len() < 64 * 1024 {
                next = frames.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            if let Err(err) = io.write_all(&buf).await {
                tracing::debug!(error = %err, "writing to a SPDY connection failed");
                return;
            }
            buf.clear();
            if io.flush().await.is_err() {
                return;
            }
        }
        if let Some(done) = close {
            let _ = io.shutdown().await;
            let _ = done.send(());
            return;
        }
    }
    let _ = io.shutdown().await;
}

async fn read_loop<R: AsyncRead>(
    io: R,
    sender: Sender,
    streams: StreamTable,
    replies: PendingReplies,
    incoming: mpsc::Sender<SpdyStream>,
) {
    let mut io = std::pin::pin!(io);
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = match decoder.decode(&mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            },
            Err(err) => {
                tracing::debug!(error = %err, "SPDY connection failed");
                break;
            }
        };
        match frame {
            Frame::SynStream { stream_id, fin, headers, .. } => {
                let (data_tx, data_rx) = mpsc::channel(STREAM_BUFFER);
                if !fin {
                    lock(&streams).insert(stream_id, data_tx);
                }
                let reply = Frame::SynReply { stream_id, fin: false, headers: Vec::new() };
                if sender.send(reply).await.is_err() {
                    break;
                }
                let writer = StreamWriter { id: stream_id, sender: sender.clone() };
                let stream = SpdyStream { id: stream_id, headers, data: data_rx, writer };
                if incoming.send(stream).await.is_err() {
                    // Nobody accepts streams any more: refuse this one.
                    let _ = sender.send(Frame::RstStream { stream_id, status: RST_CANCEL }).await;
                }
            }
            Frame::SynReply { stream_id, headers, fin } => {
                if let Some(reply) = lock(&replies).remove(&stream_id) {
                    let _ = reply.send(headers);
                }
                if fin {
                    lock(&streams).remove(&stream_id);
                }
            }
            Frame::Data { stream_id, fin, data } => {
                let target = lock(&streams).get(&stream_id).cloned();
                if let Some(target) = target
                    && !data.is_empty()
                    && target.send(data).await.is_err()
                {
                    lock(&streams).remove(&stream_id);
                }
                if fin {
                    lock(&streams).remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                lock(&streams).remove(&stream_id);
                lock(&replies).remove(&stream_id);
            }
            Frame::Headers { stream_id, fin: true, .. } => {
                lock(&streams).remove(&stream_id);
            }
            Frame::Ping { id } => {
                if sender.send(Frame::Ping { id }).await.is_err() {
                    break;
                }
            }
            Frame::GoAway { .. } => break,
            Frame::Settings { .. } | Frame::WindowUpdate { .. } | Frame::Headers { .. } => {}
        }
    }
    // Every stream reads its end; pending opens fail.
    lock(&streams).clear();
    lock(&replies).clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for byte in data {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn the_dictionary_is_the_spdy3_one() {
        let dict = dictionary();
        assert_eq!(dict.len(), 1423);
        // The dictionary ID every SPDY/3 peer announces in its first header block.
        assert_eq!(adler32(dict), 0xe3c6_a7c2);
        assert!(dict.ends_with(b"enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_across_several_frames_of_one_context() {
        let mut compressor = HeaderCompressor::new();
        let mut decompressor = HeaderDecompressor::new();
        for round in 0..3 {
            let headers = vec![
                ("streamtype".to_string(), "data".to_string()),
                ("port".to_string(), format!("80{round}")),
                ("requestid".to_string(), round.to_string()),
            ];
            let compressed = compressor.compress(&headers).expect("compress");
            assert_eq!(decompressor.decompress(&compressed).expect("decompress"), headers);
        }
    }

    #[test]
    fn the_first_header_block_names_the_spdy3_dictionary() {
        let compressed = HeaderCompressor::new().compress(&vec![("a".into(), "b".into())]).expect("compress");
        // zlib header with FDICT set, followed by the dictionary's Adler-32.
        assert_eq!(compressed[1] & 0x20, 0x20);
        assert_eq!(&compressed[2..6], &0xe3c6_a7c2u32.to_be_bytes());
    }

    #[test]
    fn frames_round_trip_through_the_codec() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                fin: false,
                unidirectional: true,
                headers: vec![("streamtype".into(), "error".into())],
            },
            Frame::SynReply { stream_id: 1, fin: true, headers: Vec::new() },
            Frame::Data { stream_id: 1, fin: false, data: Bytes::from_static(b"hello") },
            Frame::Data { stream_id: 3, fin: true, data: Bytes::new() },
            Frame::RstStream { stream_id: 5, status: RST_CANCEL },
            Frame::Settings { entries: vec![(0, 7, 65536)] },
            Frame::Ping { id: 9 },
            Frame::GoAway { last_good_stream_id: 7, status: 0 },
            Frame::Headers { stream_id: 1, fin: false, headers: vec![("x".into(), "y".into())] },
            Frame::WindowUpdate { stream_id: 1, delta: 1024 },
        ];
        let mut encoder = FrameEncoder::default();
        let mut wire = BytesMut::new();
        for frame in &frames {
            encoder.encode(frame, &mut wire).expect("encode");
        }
        // Fed a byte at a time, the decoder waits for whole frames.
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in wire {
            buf.put_u8(byte);
            while let Some(frame) = decoder.decode(&mut buf).expect("decode") {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, frames);
    }

    #[test]
    fn unknown_control_frames_are_skipped() {
        let mut wire = BytesMut::new();
        wire.put_u16(0x8003);
        wire.put_u16(42);
        wire.put_u32(2);
        wire.put_u16(0);
        FrameEncoder::default().encode(&Frame::Ping { id: 1 }, &mut wire).expect("encode");
        assert_eq!(FrameDecoder::default().decode(&mut wire).expect("decode"), Some(Frame::Ping { id: 1 }));
    }

    #[test]
    fn a_frame_of_another_version_is_refused() {
        let mut wire = BytesMut::new();
        wire.put_u16(0x8002);
        wire.put_u16(TYPE_PING);
        wire.put_u32(4);
        wire.put_u32(1);
        assert!(FrameDecoder::default().decode(&mut wire).is_err());
    }

    #[tokio::test]
    async fn a_client_and_a_server_exchange_data_on_streams() {
        let (a, b) = tokio::io::duplex(1024);
        let client = SpdyConnection::new(a, Role::Client);
        let mut server = SpdyConnection::new(b, Role::Server);
        let accept = tokio::spawn(async move {
            let mut stream = server.accept().await.expect("stream");
            let kind = stream.header("streamType").map(str::to_string);
            let got = stream.read().await;
            stream.writer().write(b"pong").await.expect("write");
            stream.writer().close().await.expect("close");
            let end = stream.read().await;
            (kind, got, end, server)
        });
        let mut stream = client.open(vec![("streamtype".into(), "data".into())]).await.expect("open");
        assert_eq!(stream.id, 1);
        stream.writer().write(b"ping").await.expect("write");
        stream.writer().close().await.expect("close");
        assert_eq!(stream.read().await.as_deref(), Some(&b"pong"[..]));
        assert_eq!(stream.read().await, None);
        let (kind, got, end, _server) = accept.await.expect("join");
        assert_eq!(kind.as_deref(), Some("data"));
        assert_eq!(got.as_deref(), Some(&b"ping"[..]));
        assert_eq!(end, None);
    }
}
