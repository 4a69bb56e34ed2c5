//! HTTP/1 one-to-one for shared files, over any byte stream (in the node: a peer stream, so the server knows which
//! authenticated peer asks).
//!
//! `GET /blake3/<hash>` with an optional `Range: bytes=a-b` (one range; `a-` and `-n` too). The answer is the Bao
//! encoding of the blocks covering the range — each tree node the range needs, then each 16 KiB block — so the
//! downloader checks every block against the hash as it arrives. Ranges are widened to whole blocks:
//! `Content-Range` says which bytes the body really covers, `Content-Length` is the encoded length. `ETag` is the
//! hash; `Blob-Size` the file's length (also on `HEAD`, which is how a client asks the size).
//!
//! A node still downloading a file serves the blocks it holds: its `HEAD` answer carries `Blob-Have`, the chunks
//! it holds (hex of a bitfield, one bit per [`CHUNK_BYTES`], high bit first), and a range over a block it lacks is
//! answered 416 like one past the end. A holder of the whole file sends no `Blob-Have`. A `HEAD` with
//! `Blob-Have-Known` (the chunks the asker heard of last; none, after a 404) is answered once the holder has others,
//! or after [`HAVE_WAIT`]: news of a chunk is pushed to those who wait for it.
//!
//! Refusals: 403 (the asking peer is not entitled), 404 (no such file), 410 (the file changed or vanished since it
//! was shared under that hash), 416 (a range starting at or past the end, `Content-Range: bytes */size`; or over
//! blocks a partial holder lacks).

use std::convert::Infallible;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::io::sync::truncate_ranges;
use bao_tree::iter::BaoChunk;
use bao_tree::{BaoTree, ChunkNum, ChunkRanges, ChunkRangesRef, TreeNode};
use bytes::Bytes;
use futures::FutureExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
pub use hyper::StatusCode;
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::outboards::{Growing, Source};
pub use super::verify::Verified;
use super::verify::{PushError, Verifier, VerifyError};
use super::{BLOCK_BYTES, BLOCK_SIZE, ContentHash, chunk_count, whole_chunks};
use crate::swarm::geometry::PieceSet;
use crate::throttle::Throttles;

/// The header that carries the file's length (the body's own length is the encoding's).
pub const BLOB_SIZE: &str = "blob-size";
/// The header a partial holder's `HEAD` answer names its chunks in.
pub const BLOB_HAVE: &str = "blob-have";
/// The header of a `HEAD` naming the chunks the asker last heard the holder had (as in [`BLOB_HAVE`]): a holder
/// still downloading answers once it has others, or after [`HAVE_WAIT`] — the news of new chunks is pushed, not
/// polled for.
pub const BLOB_HAVE_KNOWN: &str = "blob-have-known";
/// The longest a `HEAD` with [`BLOB_HAVE_KNOWN`] waits for news: the asker learns no other way that a chunk it
/// gave up on elsewhere (a source failed) could come from this holder.
pub const HAVE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Bytes of encoding gathered before they are handed to the connection.
const SEND_BUFFER: usize = 256 * 1024;
/// Encoded buffers in flight between the encoder thread and the connection, and between the connection and the
/// decoder thread.
const CHANNEL_DEPTH: usize = 8;
/// Bytes of a body gathered before they go to the decoder thread (at most: less when it waits for them).
const RECEIVE_BUFFER: usize = 256 * 1024;

/// Why a request is not served.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
    /// For a file not held yet: changes when it may be (a `HEAD` waiting for news is looked up again then).
    pub news: Option<tokio::sync::watch::Receiver<u64>>,
}

impl Refusal {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
            news: None,
        }
    }

    /// The file is not held yet; `news` changes when it may be.
    pub fn not_yet(reason: impl Into<String>, news: tokio::sync::watch::Receiver<u64>) -> Refusal {
        Refusal {
            news: Some(news),
            ..Refusal::new(StatusCode::NOT_FOUND, reason)
        }
    }
}

/// Finds the file for a hash, or says why not (entitlement included). Called on a blocking thread for every request.
pub type Lookup = Arc<dyn Fn(ContentHash) -> Result<Source, Refusal> + Send + Sync>;

type ResponseBody = BoxBody<Bytes, std::io::Error>;

/// Serves requests on one stream until the client closes it; bodies are paced by `throttles` (upload limits).
pub async fn serve<IO>(io: IO, lookup: Lookup, throttles: Throttles) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // One connection's bodies share their buffers: a swarm asks for a chunk at a time, and fresh buffers for each
    // request cost more in zero-filling and page faults than the request's own copies.
    let pool = Pool::new(SEND_BUFFER + BLOCK_BYTES as usize);
    let last = LastServed::default();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let lookup = lookup.clone();
        let throttles = throttles.clone();
        let pool = pool.clone();
        let last = last.clone();
        async move { Ok::<_, Infallible>(answer(request, lookup, throttles, pool, last).await) }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await
}

/// The whole file a connection served last, kept open for its next `GET`: a swarm asks one connection for chunk
/// after chunk of one file, and looking it up for each (its record read, the file and its tree opened, on a
/// blocking thread and back) cost three opens, four `stat`s and two thread hand-offs per 256 KiB. It is served
/// again only while what a lookup would check still holds ([`Source::still_servable`]: the asker's entitlement, and
/// the file's stamps read from the open file). A file replaced under its path (renamed over) is noticed at the next
/// connection; until then the bytes sent are still those of the hash asked for, as every body's are.
#[derive(Clone, Default)]
struct LastServed(Arc<std::sync::Mutex<Option<Kept>>>);

/// A file kept open, and the hash it was asked as.
type Kept = (ContentHash, Arc<Source>);

impl LastServed {
    /// The file kept for `hash`, if any (not checked yet).
    fn get(&self, hash: ContentHash) -> Option<Arc<Source>> {
        match &*self.0.lock().expect("last served") {
            Some((kept, source)) if *kept == hash => Some(source.clone()),
            _ => None,
        }
    }

    /// Keeps `source` for the next request, if it is a whole file (a download under way grows: looked up each time).
    fn keep(&self, hash: ContentHash, source: &Arc<Source>) {
        if source.growing.is_none() {
            *self.0.lock().expect("last served") = Some((hash, source.clone()));
        }
    }

    fn forget(&self) {
        *self.0.lock().expect("last served") = None;
    }
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response<ResponseBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text.into()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

async fn answer(
    request: Request<Incoming>,
    lookup: Lookup,
    throttles: Throttles,
    pool: Pool,
    last: LastServed,
) -> Response<ResponseBody> {
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD"),
    };
    let Some(hash) = request
        .uri()
        .path()
        .strip_prefix("/blake3/")
        .and_then(ContentHash::parse)
    else {
        return plain(StatusCode::NOT_FOUND, "not /blake3/<hash>");
    };
    let range = request
        .headers()
        .get(header::RANGE)
        .map(|v| v.to_str().unwrap_or("").to_string());
    // What the asker already knows a download under way holds: its `HEAD` waits until we hold more.
    let known = request
        .headers()
        .get(BLOB_HAVE_KNOWN)
        .and_then(|v| v.to_str().ok())
        .filter(|_| head)
        .map(str::to_string);
    let kept = if head { None } else { last.get(hash) };
    let reused = kept.is_some();
    let source = match kept {
        Some(source) => source,
        None => match look_up(&lookup, hash, known.as_deref()).await {
            Ok(source) => {
                let source = Arc::new(source);
                if !head {
                    last.keep(hash, &source);
                }
                source
            }
            Err(refused) => return refused,
        },
    };
    let size = source.size;
    let bytes = match range.as_deref().map(|r| parse_range(r, size)) {
        None => 0..size,
        Some(Ok(bytes)) => bytes,
        Some(Err(RangeError::Malformed)) => {
            return plain(StatusCode::BAD_REQUEST, "one range: bytes=a-b, a- or -n");
        }
        Some(Err(RangeError::NotSatisfiable)) => {
            let mut response = plain(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the file has {size} bytes"),
            );
            insert(
                &mut response,
                header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            );
            return response;
        }
    };
    let (covered, chunks) = block_ranges(bytes, size);
    if let Some(Growing { held, .. }) = &source.growing
        && !head
        && !(covered.start / BLOCK_BYTES..covered.end.div_ceil(BLOCK_BYTES))
            .all(|block| held.contains(block as u32))
    {
        return plain(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "not held here yet: ask for the chunks Blob-Have names",
        );
    }
    let have = source
        .growing
        .as_ref()
        .map(|growing| hex(whole_chunks(&growing.held, size).as_wire()));
    let tree = BaoTree::new(size, BLOCK_SIZE);
    let encoded_len = encoded_len(tree, &chunks);
    let nodes = ((encoded_len - (covered.end - covered.start)) / 64) as usize;
    let mut response = if head {
        Response::new(Empty::new().map_err(|never| match never {}).boxed())
    } else {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let (checked, servable) = tokio::sync::oneshot::channel();
        let encoder_pool = pool.clone();
        tokio::task::spawn_blocking(move || {
            // A kept file is checked here, on the encoder's thread: the entitlement check may wait on a lock.
            if reused {
                let still = source.still_servable().is_ok();
                let _ = checked.send(still);
                if !still {
                    return;
                }
            }
            let ranges = truncate_ranges(&chunks, size);
            if let Err(error) = encode_body(&source, ranges, nodes, &tx, &encoder_pool) {
                allpeers_log::bone!(%hash, %error, "files: a body was cut short");
                let _ = tx.blocking_send(Err(error));
            }
        });
        if reused && !servable.await.unwrap_or(false) {
            // Looked up again: refused, or sent as the file is now.
            last.forget();
            return Box::pin(answer(request, lookup, throttles, pool, last)).await;
        }
        Response::new(
            ChannelBody {
                rx: paced(rx, throttles),
            }
            .boxed(),
        )
    };
    *response.status_mut() = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    insert(&mut response, header::ETAG, &format!("\"{hash}\""));
    insert(&mut response, header::ACCEPT_RANGES, "bytes");
    insert(
        &mut response,
        header::CONTENT_LENGTH,
        &encoded_len.to_string(),
    );
    insert(&mut response, header::CONTENT_TYPE, "application/x-bao");
    response.headers_mut().insert(
        BLOB_SIZE,
        HeaderValue::from_str(&size.to_string()).expect("digits"),
    );
    if let Some(have) = have {
        insert(
            &mut response,
            header::HeaderName::from_static(BLOB_HAVE),
            &have,
        );
    }
    if range.is_some() && covered.end > covered.start {
        insert(
            &mut response,
            header::CONTENT_RANGE,
            &format!("bytes {}-{}/{size}", covered.start, covered.end - 1),
        );
    }
    response
}

/// Looks `hash` up (entitlement included) on a blocking thread. `known`: the chunks the asker of a `HEAD` last heard
/// a download under way held; the answer then waits for news (at most [`HAVE_WAIT`]).
async fn look_up(
    lookup: &Lookup,
    hash: ContentHash,
    known: Option<&str>,
) -> Result<Source, Response<ResponseBody>> {
    let deadline = tokio::time::Instant::now() + HAVE_WAIT;
    let mut wait = true;
    loop {
        let lookup = lookup.clone();
        let found = tokio::task::spawn_blocking(move || lookup(hash)).await;
        // What to wait for before looking up again, when the asker waits for news and there is none yet.
        let (found, news) = match found {
            Ok(Ok(source)) => {
                let news = match (known, &source.growing) {
                    (Some(known), Some(growing))
                        if known == hex(whole_chunks(&growing.held, source.size).as_wire()) =>
                    {
                        Some(growing.more.clone())
                    }
                    _ => None,
                };
                (Ok(source), news)
            }
            Ok(Err(mut refusal)) => {
                let news = refusal.news.take().filter(|_| known.is_some());
                (Err(refusal), news)
            }
            Err(_) => {
                return Err(plain(StatusCode::INTERNAL_SERVER_ERROR, "lookup failed"));
            }
        };
        // Looked up again (entitlement too) once there is news, at the deadline, or when the download is over;
        // nothing is held open meanwhile (the files, or a lookup's own resources).
        if let Some(mut news) = news.filter(|_| wait) {
            drop(found);
            match tokio::time::timeout_at(deadline, news.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => wait = false,
            }
            continue;
        }
        return found.map_err(|refusal| plain(refusal.status, refusal.reason));
    }
}

fn insert(response: &mut Response<ResponseBody>, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RangeError {
    Malformed,
    NotSatisfiable,
}

/// One byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`) of a file of `size` bytes, as a half-open range; an end past
/// the file is cut to it, a start at or past it is not satisfiable.
pub fn parse_range(header: &str, size: u64) -> Result<std::ops::Range<u64>, RangeError> {
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Malformed)?;
    let (first, last) = spec.split_once('-').ok_or(RangeError::Malformed)?;
    let number = |text: &str| {
        text.trim()
            .parse::<u64>()
            .map_err(|_| RangeError::Malformed)
    };
    let range = match (first.trim().is_empty(), last.trim().is_empty()) {
        (false, true) => number(first)?..size,
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            if b < a {
                return Err(RangeError::Malformed);
            }
            a..b.saturating_add(1).min(size)
        }
        (true, false) => {
            let n = number(last)?;
            if n == 0 {
                return Err(RangeError::NotSatisfiable);
            }
            size.saturating_sub(n)..size
        }
        (true, true) => return Err(RangeError::Malformed),
    };
    if range.start >= size {
        return Err(RangeError::NotSatisfiable);
    }
    Ok(range)
}

/// The whole blocks covering `bytes`: as bytes (cut to the file) and as the tree's chunk ranges.
fn block_ranges(bytes: std::ops::Range<u64>, size: u64) -> (std::ops::Range<u64>, ChunkRanges) {
    let first = bytes.start / BLOCK_BYTES;
    let end = bytes.end.div_ceil(BLOCK_BYTES);
    let chunks_per_block = BLOCK_BYTES / 1024;
    let covered = (first * BLOCK_BYTES)..(end * BLOCK_BYTES).min(size);
    let chunks = if covered.end == size {
        ChunkRanges::from(ChunkNum(first * chunks_per_block)..)
    } else {
        ChunkRanges::from(ChunkNum(first * chunks_per_block)..ChunkNum(end * chunks_per_block))
    };
    (covered, chunks)
}

/// The length of the encoding of `chunks`: 64 bytes per tree node sent, plus the data.
fn encoded_len(tree: BaoTree, chunks: &ChunkRanges) -> u64 {
    let chunks = truncate_ranges(chunks, tree.size());
    tree.ranges_pre_order_chunks_iter_ref(chunks, 0)
        .map(|item| match item {
            BaoChunk::Parent { .. } => 64,
            BaoChunk::Leaf { size, .. } => size as u64,
        })
        .sum()
}

/// The encoder thread: the Bao encoding of `chunks` of `source` (what `bao_tree::io::sync::encode_ranges` writes:
/// each tree node the chunks need, then each block), handed to the connection in buffers of about [`SEND_BUFFER`]
/// bytes. Each block is read from the file straight into the buffer that is sent, where `encode_ranges` reads it into
/// a buffer of its own for a writer to copy again; the buffers come back once sent ([`Pool`]: none zero-filled or
/// faulted in again), and the tree nodes are read a window at a time (in the order they are sent: the tree file's).
/// `nodes`: how many tree nodes the encoding holds.
fn encode_body(
    source: &Source,
    chunks: &ChunkRangesRef,
    nodes: usize,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
    pool: &Pool,
) -> std::io::Result<()> {
    let mut nodes = NodeWindow::new(nodes);
    let send = |buf: Pooled| {
        // Checked after the bytes were read: a write to the file marks it modified before its data changes.
        source.still_servable()?;
        tx.blocking_send(Ok(Bytes::from_owner(buf)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    };
    let mut buf = pool.take();
    for item in source
        .outboard
        .tree
        .ranges_pre_order_chunks_iter_ref(chunks, 0)
    {
        match item {
            BaoChunk::Parent { node, .. } => {
                let pair = nodes.read(&source.outboard, node)?;
                buf.buf[buf.len..buf.len + 64].copy_from_slice(pair);
                buf.len += 64;
            }
            BaoChunk::Leaf {
                start_chunk, size, ..
            } => {
                source.file.read_exact_at(
                    &mut buf.buf[buf.len..buf.len + size],
                    start_chunk.to_bytes(),
                )?;
                buf.len += size;
            }
        }
        if buf.len >= SEND_BUFFER {
            send(std::mem::replace(&mut buf, pool.take()))?;
        }
    }
    if buf.len > 0 {
        send(buf)?;
    }
    Ok(())
}

/// One body's buffers (the encoder's, or the decoder's), each back here once its last [`Bytes`] is dropped, at most
/// [`POOL_KEPT`] kept: a buffer taken is neither filled with zeros nor faulted in page by page again. (Fresh buffers
/// for every 256 KiB cost more in page faults than the copy into them: the allocator gives their pages back.)
#[derive(Clone)]
struct Pool(Arc<PoolInner>);

struct PoolInner {
    size: usize,
    kept: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// Buffers a pool keeps: what the channel and the connection hold at once, one being filled and one being read, and
/// (on the receiving side) those the landing's held blocks still lie in.
const POOL_KEPT: usize =
    CHANNEL_DEPTH + 2 + (super::GATHER_BYTES as usize).div_ceil(RECEIVE_BUFFER) + 1;

impl Pool {
    /// A pool of buffers of `size` bytes.
    fn new(size: usize) -> Pool {
        Pool(Arc::new(PoolInner {
            size,
            kept: Default::default(),
        }))
    }

    /// An empty buffer.
    fn take(&self) -> Pooled {
        let buf = self
            .0
            .kept
            .lock()
            .expect("pool")
            .pop()
            .unwrap_or_else(|| vec![0; self.0.size]);
        Pooled {
            buf,
            len: 0,
            pool: self.clone(),
        }
    }
}

/// A pool's buffer: its first `len` bytes are the encoding to send.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Pooled {
    fn room(&self) -> usize {
        self.buf.len() - self.len
    }

    /// Appends as much of `data` as fits; returns how much.
    fn fill(&mut self, data: &[u8]) -> usize {
        let n = self.room().min(data.len());
        self.buf[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut kept = self.pool.0.kept.lock().expect("pool");
        if kept.len() < POOL_KEPT {
            kept.push(std::mem::take(&mut self.buf));
        }
    }
}

/// Bytes of the tree file read at once at most: 1,024 nodes, the nodes of 16 MiB of blocks.
const NODE_WINDOW: usize = 64 * 1024;

/// The tree file read a window at a time: the nodes a range needs come in the file's order (pre-order), where
/// bao-tree's `load` reads each node's 64 bytes with a system call of its own. A window holds no more than the nodes
/// still to send: a chunk's ancestors lie far apart in the file, and a full window read for each of them cost more
/// than the chunk itself (up to ~640 KiB read for a 256 KiB chunk).
struct NodeWindow {
    at: u64,
    bytes: Vec<u8>,
    /// Nodes still to be read.
    left: usize,
}

impl NodeWindow {
    /// A window for a body that sends `nodes` tree nodes.
    fn new(nodes: usize) -> NodeWindow {
        NodeWindow {
            at: 0,
            bytes: Vec::new(),
            left: nodes,
        }
    }

    /// The two child hashes of `node`, as stored.
    fn read(
        &mut self,
        outboard: &PreOrderOutboard<File>,
        node: TreeNode,
    ) -> std::io::Result<&[u8]> {
        let at = outboard
            .tree
            .pre_order_offset(node)
            .ok_or_else(|| std::io::Error::other(format!("the tree has no node {node:?}")))?
            * 64;
        let inside = at >= self.at && at + 64 <= self.at + self.bytes.len() as u64;
        self.left = self.left.saturating_sub(1);
        if !inside {
            let want = ((self.left + 1) * 64).min(NODE_WINDOW);
            self.bytes.resize(want, 0);
            let mut got = 0;
            while got < want {
                match outboard
                    .data
                    .read_at(&mut self.bytes[got..], at + got as u64)
                {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.bytes.truncate(got);
            self.at = at;
            if got < 64 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        let from = (at - self.at) as usize;
        Ok(&self.bytes[from..from + 64])
    }
}

/// The encoder's buffers, let through as `throttles` allow.
fn paced(
    mut rx: mpsc::Receiver<std::io::Result<Bytes>>,
    throttles: Throttles,
) -> mpsc::Receiver<std::io::Result<Bytes>> {
    if throttles.0.is_empty() {
        return rx;
    }
    let (tx, paced) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            if let Ok(bytes) = &item {
                throttles.sending(bytes.len()).await;
            }
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    paced
}

/// A response body fed by the encoder thread.
struct ChannelBody {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|result| result.map(Frame::data)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the source refuses: {0}")]
    Refused(String),
    #[error("the source does not have it: {0}")]
    NotFound(String),
    #[error("the source's file changed since it was shared: {0}")]
    Changed(String),
    #[error("the range starts past the end of the file")]
    RangeNotSatisfiable,
    #[error("the source does not hold that range: {0}")]
    NotHeld(String),
    #[error("the source answered {0}")]
    Status(StatusCode),
    #[error("the source answered for other content or another range: {0}")]
    Mismatch(String),
    #[error("a block at byte {offset} failed verification: the source's bytes are not the file's")]
    Verification { offset: u64 },
    /// Our side: verified bytes could not be written (a full or failing disk). Not the source's fault.
    #[error("writing what arrived failed: {0}")]
    Landing(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl FetchError {
    /// The connection broke once it was up (HTTP failed on it, or the dial's connection went away under the stream,
    /// `ConnectionAborted`/`ConnectionReset`/`BrokenPipe`): asking again on a new one may well succeed.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            FetchError::Http(_) => true,
            FetchError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            ),
            _ => false,
        }
    }
}

/// A response whose head checked out: the body still to be read and verified.
pub struct Fetch {
    body: Incoming,
    /// The connection's receive buffers.
    pool: Pool,
    hash: ContentHash,
    size: u64,
    /// The bytes the body covers (whole blocks).
    pub range: std::ops::Range<u64>,
}

/// What a source holds of a file, as its `HEAD` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    Whole,
    /// The chunks ([`CHUNK_BYTES`](super::CHUNK_BYTES)) a download under way holds.
    Chunks(PieceSet),
}

/// One HTTP/1 connection to a source, for requests one after another.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    /// Receive buffers shared by the connection's bodies (one at a time).
    pool: Pool,
}

impl Connection {
    pub async fn open<IO>(io: IO) -> Result<Connection, FetchError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                allpeers_log::bone!(%error, "files: the HTTP connection ended");
            }
        });
        Ok(Connection {
            sender,
            pool: Pool::new(RECEIVE_BUFFER),
        })
    }

    /// Asks for the blocks covering `range` of `hash` (a file of `size` bytes) and checks the answer's head: status,
    /// `ETag`, the range and the size it says.
    pub async fn get(
        &mut self,
        hash: ContentHash,
        size: u64,
        range: std::ops::Range<u64>,
    ) -> Result<Fetch, FetchError> {
        let (covered, _) = block_ranges(range.clone(), size);
        let request = Request::get(format!("/blake3/{hash}"))
            .header(header::HOST, "allpeers")
            .header(
                header::RANGE,
                if range.end >= size {
                    format!("bytes={}-", range.start)
                } else {
                    format!("bytes={}-{}", range.start, range.end.saturating_sub(1))
                },
            )
            .body(Empty::new())
            .expect("a valid request");
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        match status {
            StatusCode::PARTIAL_CONTENT => {}
            StatusCode::FORBIDDEN => return Err(FetchError::Refused(text(response).await)),
            StatusCode::NOT_FOUND => return Err(FetchError::NotFound(text(response).await)),
            StatusCode::GONE => return Err(FetchError::Changed(text(response).await)),
            StatusCode::RANGE_NOT_SATISFIABLE if range.start < size => {
                return Err(FetchError::NotHeld(text(response).await));
            }
            StatusCode::RANGE_NOT_SATISFIABLE => return Err(FetchError::RangeNotSatisfiable),
            other => return Err(FetchError::Status(other)),
        }
        let headers = response.headers();
        let etag = headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if etag.trim_matches('"') != hash.to_hex() {
            return Err(FetchError::Mismatch(format!("ETag {etag}")));
        }
        let content_range = headers
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if covered.is_empty()
            || content_range != format!("bytes {}-{}/{size}", covered.start, covered.end - 1)
        {
            return Err(FetchError::Mismatch(format!(
                "Content-Range {content_range}"
            )));
        }
        Ok(Fetch {
            body: response.into_body(),
            pool: self.pool.clone(),
            hash,
            size,
            range: covered,
        })
    }

    /// Asks what the source holds of `hash`, a file of `size` bytes (a source saying another size is refused).
    /// `known`: the chunks it said it held last time; a source still downloading then answers once it holds others,
    /// or after [`HAVE_WAIT`].
    pub async fn holding(
        &mut self,
        hash: ContentHash,
        size: u64,
        known: Option<&PieceSet>,
    ) -> Result<Holding, FetchError> {
        let response = self.head(hash, known).await?;
        let said = blob_size(&response)?;
        if said != size {
            return Err(FetchError::Mismatch(format!("Blob-Size {said}")));
        }
        let Some(have) = response.headers().get(BLOB_HAVE) else {
            return Ok(Holding::Whole);
        };
        have.to_str()
            .ok()
            .and_then(unhex)
            .and_then(|bits| PieceSet::from_wire(&bits, chunk_count(size)))
            .map(Holding::Chunks)
            .ok_or_else(|| FetchError::Mismatch("Blob-Have is not a bitfield of the chunks".into()))
    }

    async fn head(
        &mut self,
        hash: ContentHash,
        known: Option<&PieceSet>,
    ) -> Result<Response<Incoming>, FetchError> {
        let mut request = Request::head(format!("/blake3/{hash}")).header(header::HOST, "allpeers");
        if let Some(known) = known {
            request = request.header(BLOB_HAVE_KNOWN, hex(known.as_wire()));
        }
        let request = request.body(Empty::new()).expect("a valid request");
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        match response.status() {
            StatusCode::OK => Ok(response),
            StatusCode::FORBIDDEN => Err(FetchError::Refused("HEAD".into())),
            StatusCode::NOT_FOUND => Err(FetchError::NotFound("HEAD".into())),
            StatusCode::GONE => Err(FetchError::Changed("HEAD".into())),
            other => Err(FetchError::Status(other)),
        }
    }
}

async fn text(response: Response<Incoming>) -> String {
    let body = http_body_util::Limited::new(response.into_body(), 4096);
    body.collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default()
}

fn blob_size(response: &Response<Incoming>) -> Result<u64, FetchError> {
    response
        .headers()
        .get(BLOB_SIZE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| FetchError::Mismatch("no Blob-Size".into()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex digits to bytes; `None` for an odd length or a non-digit.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Asks for `hash` from byte `start` (a block boundary) to the end, on a connection of its own.
pub async fn get<IO>(io: IO, hash: ContentHash, size: u64, start: u64) -> Result<Fetch, FetchError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Connection::open(io)
        .await?
        .get(hash, size, start..size.max(start))
        .await
}

/// Reads a HEAD answer: the file's size, or why not.
pub async fn head<IO>(io: IO, hash: ContentHash) -> Result<u64, FetchError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let response = Connection::open(io).await?.head(hash, None).await?;
    blob_size(&response)
}

/// A body read to its end whose last blocks may still be verified and landed on the decoder thread.
pub struct Decoding(tokio::task::JoinHandle<Result<(), FetchError>>);

impl Decoding {
    /// Waits for the decoder thread: every block verified and handed to the sink, or why not.
    pub async fn finish(self) -> Result<(), FetchError> {
        self.0
            .await
            .map_err(|e| FetchError::Io(std::io::Error::other(e.to_string())))?
    }
}

/// How a body's reading ended, when it did well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// All of it.
    Whole,
    /// Stopped when asked: the blocks read before were verified and handed on, the rest was not read.
    Stopped,
}

impl Fetch {
    /// Reads the body through `throttles`, verifies it block by block on a blocking thread and hands each verified
    /// tree node and block to `sink` — a block that fails verification stops the fetch before it reaches the sink.
    /// Returns when the body ends; an error of the sink stops it as [`FetchError::Landing`].
    pub async fn receive<S>(self, throttles: Throttles, sink: S) -> Result<(), FetchError>
    where
        S: FnMut(Verified) -> std::io::Result<()> + Send + 'static,
    {
        self.receive_until(throttles, sink, std::future::pending())
            .await
            .map(|_| ())
    }

    /// As [`Fetch::receive`], but stops reading once `stop` is ready; returns once every block read by then is
    /// verified and handed to `sink`.
    pub async fn receive_until<S>(
        self,
        throttles: Throttles,
        sink: S,
        stop: impl Future<Output = ()>,
    ) -> Result<BodyEnd, FetchError>
    where
        S: FnMut(Verified) -> std::io::Result<()> + Send + 'static,
    {
        let (forwarded, decoding) = self.read_body(throttles, sink, stop).await;
        // The decoder's error (a bad block, a failed write) is the one to report; a body we stopped ends cut short.
        match decoding.finish().await {
            Err(FetchError::Io(e))
                if forwarded.as_ref().is_ok_and(|end| *end == BodyEnd::Stopped)
                    && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            decoded => decoded?,
        }
        forwarded
    }

    /// As [`Fetch::receive_until`], but returns once the body is read (or stopped), so the connection can carry the
    /// next request while the decoder thread finishes with this one's last blocks: the body's outcome, and the
    /// decoding to wait for.
    pub async fn read_body<S>(
        self,
        throttles: Throttles,
        sink: S,
        stop: impl Future<Output = ()>,
    ) -> (Result<BodyEnd, FetchError>, Decoding)
    where
        S: FnMut(Verified) -> std::io::Result<()> + Send + 'static,
    {
        // A tokio channel: a full one makes this task wait, where a blocking send would stall a runtime worker
        // (one of the two that also drive the transport).
        let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let (hash, size, range) = (self.hash, self.size, self.range.clone());
        let decoder = tokio::task::spawn_blocking(move || {
            let mut rx = rx;
            decode_blocks(
                std::iter::from_fn(|| rx.blocking_recv()),
                hash,
                size,
                range,
                sink,
            )
        });
        let mut body = self.body;
        // The body's bytes are copied into buffers of our own, reused, and hyper's dropped at once: hyper then reads
        // into the same buffer again, where a buffer still queued for the decoder made it allocate a fresh one for
        // every read (page faults cost more than this copy). A buffer goes to the decoder when full, or when the
        // body has nothing more ready (so a slow body is verified as it comes).
        let pool = self.pool;
        let forwarded = async {
            let mut buf = pool.take();
            loop {
                let next = match body.frame().now_or_never() {
                    Some(next) => next,
                    None => {
                        if buf.len > 0 {
                            let ready = std::mem::replace(&mut buf, pool.take());
                            // The decoder stopped (a bad block): its error is the one to report.
                            if tx.send(Bytes::from_owner(ready)).await.is_err() {
                                return Ok(());
                            }
                        }
                        body.frame().await
                    }
                };
                let Some(frame) = next else {
                    break;
                };
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                throttles.received(data.len()).await;
                let mut rest = &data[..];
                while !rest.is_empty() {
                    rest = &rest[buf.fill(rest)..];
                    if buf.room() == 0 {
                        let full = std::mem::replace(&mut buf, pool.take());
                        if tx.send(Bytes::from_owner(full)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            if buf.len > 0 {
                let _ = tx.send(Bytes::from_owner(buf)).await;
            }
            Ok::<(), FetchError>(())
        };
        let forwarded = tokio::select! {
            forwarded = forwarded => forwarded.map(|()| BodyEnd::Whole),
            () = stop => Ok(BodyEnd::Stopped),
        };
        drop(tx);
        (forwarded, Decoding(decoder))
    }
}

/// Decodes the Bao encoding of `hash`'s blocks covering `range`, arriving in `pieces` (the body's buffers, in
/// order), verifying each block and tree node against the hash before it goes to `sink` ([`Verifier`]: a block inside
/// one piece is handed on without a copy). Blocking (the sink writes to disk).
pub fn decode_blocks(
    pieces: impl IntoIterator<Item = Bytes>,
    hash: ContentHash,
    size: u64,
    range: std::ops::Range<u64>,
    mut sink: impl FnMut(Verified) -> std::io::Result<()>,
) -> Result<(), FetchError> {
    let tree = BaoTree::new(size, BLOCK_SIZE);
    let (_, chunks) = block_ranges(range, size);
    let mut verifier = Verifier::new(hash.blake3(), tree, &chunks);
    for piece in pieces {
        verifier.push(piece, &mut sink).map_err(decode_error)?;
    }
    verifier.finish(&mut sink).map_err(decode_error)
}

fn decode_error(error: PushError<std::io::Error>) -> FetchError {
    match error {
        PushError::Verify(VerifyError::Mismatch { offset }) => FetchError::Verification { offset },
        PushError::Verify(error @ VerifyError::CutShort { .. }) => FetchError::Io(
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, error),
        ),
        PushError::Verify(error @ VerifyError::TooLong(_)) => {
            FetchError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, error))
        }
        PushError::Sink(error) => FetchError::Landing(error),
    }
}

/// Serves what `outboards` share, to anyone (tests' honest source).
#[cfg(test)]
pub(crate) fn serving(outboards: &super::outboards::Outboards) -> Lookup {
    let outboards = outboards.clone();
    Arc::new(move |hash| {
        outboards
            .open_source(&hash)
            .map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::blob::CHUNK_BYTES;
    use crate::blob::outboards::{Outboards, SharedFile};

    fn content(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn ranges_parse_and_a_start_past_the_end_is_not_satisfiable() {
        assert_eq!(parse_range("bytes=0-", 10), Ok(0..10));
        assert_eq!(parse_range("bytes=2-4", 10), Ok(2..5));
        assert_eq!(parse_range("bytes=2-400", 10), Ok(2..10));
        assert_eq!(parse_range("bytes=-3", 10), Ok(7..10));
        assert_eq!(parse_range("bytes=-30", 10), Ok(0..10));
        assert_eq!(
            parse_range("bytes=10-", 10),
            Err(RangeError::NotSatisfiable)
        );
        assert_eq!(parse_range("bytes=0-", 0), Err(RangeError::NotSatisfiable));
        assert_eq!(parse_range("bytes=5-2", 10), Err(RangeError::Malformed));
        assert_eq!(parse_range("bytes=a-", 10), Err(RangeError::Malformed));
        assert_eq!(parse_range("items=0-", 10), Err(RangeError::Malformed));
        assert_eq!(parse_range("bytes=-", 10), Err(RangeError::Malformed));
    }

    /// An encoding as a body would bring it: in buffers of varied sizes, blocks straddling some of them.
    fn pieces(encoded: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut rest = encoded;
        for size in [100, 20_000, 65_536, 7].iter().cycle() {
            if rest.is_empty() {
                return out;
            }
            let (piece, after) = rest.split_at((*size).min(rest.len()));
            out.push(Bytes::copy_from_slice(piece));
            rest = after;
        }
        out
    }

    fn encode(data: &[u8], start: u64) -> (ContentHash, Vec<u8>) {
        encode_range(data, start..data.len() as u64)
    }

    /// Our encoding of the blocks covering `range`, checked against bao-tree's.
    fn encode_range(data: &[u8], range: std::ops::Range<u64>) -> (ContentHash, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, data).unwrap();
        let outboards = Outboards::open(&dir.path().join("c")).unwrap();
        let shared = outboards.add_file(&path).unwrap();
        let source = outboards.open_source(&shared.hash).unwrap();
        let (covered, chunks) = block_ranges(range, data.len() as u64);
        let ranges = truncate_ranges(&chunks, source.size);
        let nodes = (encoded_len(BaoTree::new(source.size, BLOCK_SIZE), &chunks)
            - (covered.end - covered.start)) as usize
            / 64;
        // Ours, in buffers as the connection gets them, is bao-tree's encoding byte for byte, from a pool that
        // already served another body (its buffers hold that body's bytes).
        let pool = Pool::new(SEND_BUFFER + BLOCK_BYTES as usize);
        for _ in 0..2 {
            let (tx, mut rx) = mpsc::channel(1024);
            encode_body(&source, ranges, nodes, &tx, &pool).unwrap();
            drop(tx);
            while rx.blocking_recv().is_some() {}
        }
        let (tx, mut rx) = mpsc::channel(1024);
        encode_body(&source, ranges, nodes, &tx, &pool).unwrap();
        drop(tx);
        let mut out = Vec::new();
        while let Some(buf) = rx.blocking_recv() {
            out.extend_from_slice(&buf.unwrap());
        }
        let mut theirs = Vec::new();
        bao_tree::io::sync::encode_ranges(&source.file, &source.outboard, ranges, &mut theirs)
            .unwrap();
        assert!(out == theirs, "the encodings differ");
        assert_eq!(
            out.len() as u64,
            encoded_len(BaoTree::new(source.size, BLOCK_SIZE), &chunks)
        );
        (shared.hash, out)
    }

    #[test]
    fn a_chunk_deep_in_a_large_file_is_encoded_with_its_scattered_ancestors() {
        // 2,000 blocks: a tree 11 levels deep, whose nodes span 128 KiB of the tree file (two full windows).
        let data = content(2_000 * BLOCK_BYTES as usize - 5);
        let size = data.len() as u64;
        for range in [
            0..CHUNK_BYTES,
            1_234 * BLOCK_BYTES..1_234 * BLOCK_BYTES + CHUNK_BYTES,
            1_999 * BLOCK_BYTES..size,
            700 * BLOCK_BYTES + 1..700 * BLOCK_BYTES + 2,
        ] {
            let (hash, encoded) = encode_range(&data, range.clone());
            let (covered, _) = block_ranges(range, size);
            let mut got = Vec::new();
            decode_blocks(pieces(&encoded), hash, size, covered.clone(), |item| {
                if let Verified::Block { data, .. } = item {
                    got.extend_from_slice(&data);
                }
                Ok(())
            })
            .unwrap();
            assert!(got == data[covered.start as usize..covered.end as usize]);
        }
    }

    #[test]
    fn an_encoding_from_any_block_decodes_to_the_file_and_a_flipped_bit_is_caught() {
        let data = content(300_000);
        let size = data.len() as u64;
        for start in [0, BLOCK_BYTES, 5 * BLOCK_BYTES, 18 * BLOCK_BYTES] {
            let (hash, encoded) = encode(&data, start);
            let mut got = vec![0u8; data.len()];
            decode_blocks(pieces(&encoded), hash, size, start..size, |item| {
                if let Verified::Block { offset, data } = item {
                    got[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(got[start as usize..], data[start as usize..]);
        }
        // One bit flipped in the data of the block at 64 KiB: the blocks before it arrive, it and the rest never do.
        let (hash, mut encoded) = encode(&data, 0);
        let last = encoded.len() - 100;
        encoded[last] ^= 1;
        let mut accepted = Vec::new();
        let result = decode_blocks(pieces(&encoded), hash, size, 0..size, |item| {
            if let Verified::Block { offset, data } = item {
                accepted.push((offset, data.len()));
            }
            Ok(())
        });
        assert!(matches!(result, Err(FetchError::Verification { .. })));
        let verified: u64 = accepted.iter().map(|(_, n)| *n as u64).sum();
        assert!(verified < size);
        // Cut short: an error, not a silent end.
        let (hash, encoded) = encode(&data, 0);
        let result = decode_blocks(
            pieces(&encoded[..encoded.len() / 2]),
            hash,
            size,
            0..size,
            |_| Ok(()),
        );
        assert!(matches!(result, Err(FetchError::Io(_))));
    }

    /// A file of `len` bytes shared from `dir`: its bytes, its path, the outboards that share it and what they say.
    fn shared(
        dir: &std::path::Path,
        len: usize,
    ) -> (Vec<u8>, std::path::PathBuf, Outboards, SharedFile) {
        let data = content(len);
        let path = dir.join("album.bin");
        std::fs::write(&path, &data).unwrap();
        let outboards = Outboards::open(&dir.join("c")).unwrap();
        let shared = outboards.add_file(&path).unwrap();
        (data, path, outboards, shared)
    }

    /// A server on one end of a pipe, a client on the other.
    async fn pair(lookup: Lookup) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let task = tokio::spawn(async move {
            let _ = serve(server, lookup, Throttles(vec![])).await;
        });
        (client, task)
    }

    #[tokio::test]
    async fn get_resumes_from_a_block_head_gives_the_size_and_refusals_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let data = content(200_000);
        let path = dir.path().join("video.bin");
        std::fs::write(&path, &data).unwrap();
        let outboards = Outboards::open(&dir.path().join("c")).unwrap();
        let shared = outboards.add_file(&path).unwrap();
        let refused = ContentHash::of(b"secret");
        let lookup: Lookup = {
            let outboards = outboards.clone();
            Arc::new(move |hash| {
                if hash == refused {
                    return Err(Refusal::new(StatusCode::FORBIDDEN, "not a member"));
                }
                outboards
                    .open_source(&hash)
                    .map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e.to_string()))
            })
        };
        let size = data.len() as u64;
        let got = Arc::new(Mutex::new(vec![0u8; data.len()]));
        let (io, _server) = pair(lookup.clone()).await;
        let fetch = get(io, shared.hash, size, 3 * BLOCK_BYTES).await.unwrap();
        let sink = got.clone();
        fetch
            .receive(Throttles(vec![]), move |item| {
                if let Verified::Block { offset, data } = item {
                    sink.lock().unwrap()[offset as usize..offset as usize + data.len()]
                        .copy_from_slice(&data);
                }
                Ok(())
            })
            .await
            .unwrap();
        let start = 3 * BLOCK_BYTES as usize;
        assert_eq!(got.lock().unwrap()[start..], data[start..]);

        let (io, _server) = pair(lookup.clone()).await;
        assert_eq!(head(io, shared.hash).await.unwrap(), size);
        let (io, _server) = pair(lookup.clone()).await;
        assert!(matches!(
            get(
                io,
                shared.hash,
                size,
                size.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
            )
            .await,
            Err(FetchError::RangeNotSatisfiable)
        ));
        let (io, _server) = pair(lookup.clone()).await;
        assert!(matches!(
            get(io, refused, size, 0).await,
            Err(FetchError::Refused(why)) if why == "not a member"
        ));
        let (io, _server) = pair(lookup.clone()).await;
        assert!(matches!(
            get(io, ContentHash::of(b"other"), size, 0).await,
            Err(FetchError::NotFound(_))
        ));
        // The size we believe is wrong: the head does not match, nothing is decoded.
        let (io, _server) = pair(lookup).await;
        assert!(matches!(
            get(io, shared.hash, size + 1, 0).await,
            Err(FetchError::Mismatch(_))
        ));
    }

    #[tokio::test]
    async fn a_holder_still_downloading_answers_a_head_naming_its_chunks_once_it_holds_more() {
        use crate::blob::BLOCKS_PER_CHUNK;
        use crate::blob::partial::Written;
        let dir = tempfile::tempdir().unwrap();
        let (data, _, outboards, shared) = shared(dir.path(), 4 * CHUNK_BYTES as usize);
        let size = data.len() as u64;
        let blocks_of = |chunk: u64| {
            (chunk * BLOCKS_PER_CHUNK..(chunk + 1) * BLOCKS_PER_CHUNK).map(|b| b as u32)
        };
        let mut first = PieceSet::new(size.div_ceil(BLOCK_BYTES) as u32);
        for block in blocks_of(0) {
            first.insert(block);
        }
        let written = Arc::new(Written::new(first));
        // The download under way as the node's lookup serves it; each lookup says it was made.
        let (looked_up, mut lookups) = mpsc::unbounded_channel();
        let lookup: Lookup = {
            let (outboards, written) = (outboards.clone(), written.clone());
            Arc::new(move |hash| {
                let mut source = outboards.open_source(&hash).unwrap();
                source.growing = Some(Growing {
                    held: written.blocks(),
                    more: written.watch(),
                });
                looked_up.send(()).unwrap();
                Ok(source)
            })
        };
        let chunks = |list: &[u32]| {
            let mut set = PieceSet::new(4);
            for chunk in list {
                set.insert(*chunk);
            }
            Holding::Chunks(set)
        };
        let (io, _server) = pair(lookup).await;
        let mut connection = Connection::open(io).await.unwrap();
        let holding = connection.holding(shared.hash, size, None).await.unwrap();
        assert_eq!(holding, chunks(&[0]));
        lookups.recv().await.unwrap();

        // Naming what it holds: no answer until it holds more (half a chunk more is not a chunk).
        let Holding::Chunks(known) = holding else {
            unreachable!()
        };
        let asked = std::time::Instant::now();
        let waiting = tokio::spawn(async move {
            let holding = connection
                .holding(shared.hash, size, Some(&known))
                .await
                .unwrap();
            (holding, connection)
        });
        lookups.recv().await.unwrap();
        written.offer(blocks_of(1).take(8));
        lookups.recv().await.unwrap();
        written.offer(blocks_of(1));
        let (holding, mut connection) = waiting.await.unwrap();
        assert_eq!(holding, chunks(&[0, 1]), "news pushed, not polled");
        assert!(asked.elapsed() < HAVE_WAIT);

        // Nothing more: answered as it is after HAVE_WAIT.
        let Holding::Chunks(known) = holding else {
            unreachable!()
        };
        let asked = std::time::Instant::now();
        let holding = connection
            .holding(shared.hash, size, Some(&known))
            .await
            .unwrap();
        assert_eq!(holding, chunks(&[0, 1]));
        assert!(asked.elapsed() >= HAVE_WAIT);

        // Knowing less than it holds: answered at once.
        let mut less = PieceSet::new(4);
        less.insert(0);
        let asked = std::time::Instant::now();
        let holding = connection
            .holding(shared.hash, size, Some(&less))
            .await
            .unwrap();
        assert_eq!(holding, chunks(&[0, 1]));
        assert!(asked.elapsed() < HAVE_WAIT);
    }

    /// The block `block` of `hash` (a file of `size` bytes), asked on `connection` and verified.
    async fn block_of(
        connection: &mut Connection,
        hash: ContentHash,
        size: u64,
        block: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let range = block * BLOCK_BYTES..(block + 1) * BLOCK_BYTES;
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        connection
            .get(hash, size, range)
            .await?
            .receive(Throttles(vec![]), move |item| {
                if let Verified::Block { data, .. } = item {
                    sink.lock().unwrap().extend_from_slice(&data);
                }
                Ok(())
            })
            .await?;
        Ok(std::mem::take(&mut *got.lock().unwrap()))
    }

    #[tokio::test]
    async fn a_connection_looks_its_file_up_once_and_again_once_it_changed_or_its_asker_lost_it() {
        use std::io::Write;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let (data, path, outboards, shared) = shared(dir.path(), 4 * BLOCK_BYTES as usize);
        let size = data.len() as u64;
        let (lookups, member) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(true)),
        );
        let lookup: Lookup = {
            let (lookups, member) = (lookups.clone(), member.clone());
            Arc::new(move |hash| {
                lookups.fetch_add(1, Ordering::SeqCst);
                if !member.load(Ordering::SeqCst) {
                    return Err(Refusal::new(StatusCode::FORBIDDEN, "not a member"));
                }
                let mut source = outboards
                    .open_source(&hash)
                    .map_err(|e| Refusal::new(StatusCode::GONE, e.to_string()))?;
                let member = member.clone();
                source.allowed = Some(Arc::new(move || member.load(Ordering::SeqCst)));
                Ok(source)
            })
        };
        let (io, _server) = pair(lookup).await;
        let mut connection = Connection::open(io).await.unwrap();
        let hash = shared.hash;
        // Chunk after chunk of one file: looked up once.
        for block in 0..3 {
            let got = block_of(&mut connection, hash, size, block).await.unwrap();
            let at = (block * BLOCK_BYTES) as usize;
            assert_eq!(got, data[at..at + BLOCK_BYTES as usize]);
        }
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
        // The asker is no longer entitled: looked up again, and refused.
        member.store(false, Ordering::SeqCst);
        assert!(matches!(
            block_of(&mut connection, hash, size, 3).await,
            Err(FetchError::Refused(why)) if why == "not a member"
        ));
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        member.store(true, Ordering::SeqCst);
        block_of(&mut connection, hash, size, 3).await.unwrap();
        assert_eq!(lookups.load(Ordering::SeqCst), 3);
        // The file grows on disk: looked up again, and refused as changed, not sent under the old hash.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        assert!(matches!(
            block_of(&mut connection, hash, size, 0).await,
            Err(FetchError::Changed(_))
        ));
        assert_eq!(lookups.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_file_that_changes_while_it_is_served_is_cut_short_before_a_changed_byte_goes_out() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let data = content(16 << 20);
        let path = dir.path().join("film.bin");
        std::fs::write(&path, &data).unwrap();
        // Hashed with an old modification time: any write from now on gives the file another one.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
            .unwrap();
        let outboards = Outboards::open(&dir.path().join("c")).unwrap();
        let shared = outboards.add_file(&path).unwrap();
        let size = data.len() as u64;
        let (io, _server) = pair(serving(&outboards)).await;
        let fetch = get(io, shared.hash, size, 0).await.unwrap();
        // The file's last quarter is rewritten as the first block arrives: the server is a few MiB ahead at most.
        let verified = Arc::new(Mutex::new(0u64));
        let (count, mut rewritten) = (verified.clone(), false);
        let result = fetch
            .receive(Throttles(vec![]), move |item| {
                if let Verified::Block { data, .. } = item {
                    *count.lock().unwrap() += data.len() as u64;
                    if !rewritten {
                        let file = File::options().write(true).open(&path).unwrap();
                        file.write_all_at(&vec![0xee; 4 << 20], 12 << 20).unwrap();
                        rewritten = true;
                    }
                }
                Ok(())
            })
            .await;
        assert!(
            matches!(result, Err(FetchError::Io(_) | FetchError::Http(_))),
            "cut short, not a block failing verification (an honest source taken for a tampering one): {result:?}"
        );
        assert!(*verified.lock().unwrap() < 12 << 20);
        // Asked again: refused as changed.
        let (io, _server) = pair(Arc::new(move |hash| {
            outboards
                .open_source(&hash)
                .map_err(|e| Refusal::new(StatusCode::GONE, e.to_string()))
        }))
        .await;
        assert!(matches!(
            get(io, shared.hash, size, 0).await,
            Err(FetchError::Changed(_))
        ));
    }

    #[tokio::test]
    async fn a_member_holding_none_of_a_file_answers_a_waiting_head_once_its_own_download_lands_a_chunk()
     {
        use crate::blob::BLOCKS_PER_CHUNK;
        use crate::blob::partial::{Partial, Partials, Serving, Written};
        let dir = tempfile::tempdir().unwrap();
        let (data, path, _, shared) = shared(dir.path(), 4 * CHUNK_BYTES as usize);
        let size = data.len() as u64;
        // The member's registry of downloads, served as the node serves it; each lookup says it was made.
        let partials = Partials::default();
        let (looked_up, mut lookups) = mpsc::unbounded_channel();
        let lookup: Lookup = {
            let partials = partials.clone();
            Arc::new(move |hash| {
                let serving = partials.open_source(&hash);
                looked_up.send(()).unwrap();
                match serving {
                    Serving::Held(source) => Ok(source.unwrap()),
                    Serving::NothingYet(news) => Err(Refusal::not_yet("nothing yet", news)),
                }
            })
        };
        let (io, _server) = pair(lookup).await;
        let mut connection = Connection::open(io).await.unwrap();
        assert!(matches!(
            connection.holding(shared.hash, size, None).await,
            Err(FetchError::NotFound(_))
        ));
        lookups.recv().await.unwrap();

        // Saying it knows of nothing: no answer until the member holds a chunk.
        let asked = std::time::Instant::now();
        let waiting = tokio::spawn(async move {
            let nothing = PieceSet::new(4);
            connection.holding(shared.hash, size, Some(&nothing)).await
        });
        lookups.recv().await.unwrap();
        // Its download starts (holding nothing yet), then lands the first chunk.
        let written = Arc::new(Written::new(PieceSet::new(
            size.div_ceil(BLOCK_BYTES) as u32
        )));
        partials.insert(
            shared.hash,
            Partial {
                part: path.clone(),
                outboard: dir.path().join("c").join(format!("{}.obao", shared.hash)),
                size,
                blocks: written.clone(),
            },
        );
        lookups.recv().await.unwrap();
        written.offer((0..BLOCKS_PER_CHUNK).map(|b| b as u32));
        let holding = waiting.await.unwrap().unwrap();
        let mut first = PieceSet::new(4);
        first.insert(0);
        assert_eq!(holding, Holding::Chunks(first), "news pushed, not polled");
        assert!(asked.elapsed() < HAVE_WAIT);
    }
}
