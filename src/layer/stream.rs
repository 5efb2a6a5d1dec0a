//! A layer's bytes in a pipeline of threads, so that reading (and hashing) the blob,
//! inflating it, and hashing and parsing the tar each run on a core of their own: the
//! slowest of them (inflate) sets the pace, not their sum.
//!
//! ```text
//! fetch thread    blob -> digest and size check -> compressed chunks
//! inflate thread  compressed chunks -> gzip / zstd / plain -> tar chunks
//! caller          tar chunks -> diff_id hash -> tar entries
//! ```
//!
//! Channels between them are bounded (a few chunks each), so memory stays small whatever
//! the layer's size. The caller waits with a timeout and gives up as soon as its token is
//! cancelled, even when the fetch thread is stuck in a read from a silent peer; the
//! threads it leaves end when their reads return and find nobody listening.

use crate::control::Locked;
use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::control::Cancel;
use crate::model::digest::{Hasher, VerifyingReader};
use crate::model::{Descriptor, Digest};

use super::compression::Compression;
use super::gzip::GzipDecoder;

/// The size of the chunks that move between the threads.
const CHUNK: usize = 64 * 1024;
/// How many chunks each channel holds.
const DEPTH: usize = 2;
/// How often a wait looks at the cancellation token.
const POLL: Duration = Duration::from_millis(50);

/// Buffers handed back by a channel's reader for its writer to fill again, so chunks are
/// not allocated (and zeroed) anew.
#[derive(Clone)]
struct Recycle {
    back: SyncSender<Vec<u8>>,
}

/// Where a channel's writer takes its buffers from.
struct Buffers {
    returned: Receiver<Vec<u8>>,
}

fn buffers() -> (Recycle, Buffers) {
    let (back, returned) = mpsc::sync_channel(DEPTH + 2);
    (Recycle { back }, Buffers { returned })
}

impl Recycle {
    /// Hands a buffer back (its bytes stay: only what a shorter chunk left is zeroed again).
    fn give(&self, buf: Vec<u8>) {
        if buf.capacity() >= CHUNK {
            let _ = self.back.try_send(buf);
        }
    }
}

impl Buffers {
    /// A buffer of `CHUNK` bytes to fill: a returned one, or a new one.
    fn take(&self) -> Vec<u8> {
        let mut buf = self.returned.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        buf
    }
}

/// What moves down a channel.
enum Piece {
    /// Bytes.
    Data(Vec<u8>),
    /// The end: the stream is whole (`Ok`) or failed.
    End(io::Result<()>),
}

/// Where the threads of a stream record a panic, so that it is reported as what it is.
#[derive(Clone, Default)]
pub struct Panics(Arc<Mutex<Option<String>>>);

impl Panics {
    /// The first panic's message, if a thread panicked.
    pub fn first(&self) -> Option<String> {
        self.0.locked().clone()
    }
}

/// A layer being read by the threads of the pipeline.
pub struct LayerStream {
    /// The tar stream (hashed as it is read).
    pub tar: TarReader,
    /// The blob's verdict: its digest and size matched (`Ok`), or why not.
    blob: Receiver<io::Result<()>>,
    /// Tells the inflate thread to stop inflating (the caller stopped reading).
    skip: Arc<AtomicBool>,
    cancel: Cancel,
    /// Panics of its threads.
    pub panics: Panics,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LayerStream {
    /// Starts the threads for `blob`, checked against `desc`.
    pub fn start<R: Read + Send + 'static>(
        blob: R,
        desc: &Descriptor,
        cancel: &Cancel,
    ) -> io::Result<LayerStream> {
        let (compressed_tx, compressed_rx) = mpsc::sync_channel(DEPTH);
        let (compressed_back, compressed_buffers) = buffers();
        let (blob_tx, blob_rx) = mpsc::sync_channel(1);
        let verifying = VerifyingReader::new(blob, desc.digest.clone(), Some(desc.size));
        let panics = Panics::default();
        let fetching = spawn("unroot-fetch", &panics, move || {
            fetch(verifying, compressed_tx, compressed_buffers, blob_tx)
        })?;
        let (tar_tx, tar_rx) = mpsc::sync_channel(DEPTH);
        let (tar_back, tar_buffers) = buffers();
        let (kind_tx, kind_rx) = mpsc::sync_channel(1);
        let skip = Arc::new(AtomicBool::new(false));
        let skipping = skip.clone();
        let inflating = spawn("unroot-inflate", &panics, move || {
            inflate(
                ChunkReader::new(compressed_rx, compressed_back),
                tar_tx,
                tar_buffers,
                kind_tx,
                skipping,
            )
        })?;
        let compression = match recv(&kind_rx, cancel) {
            Ok(c) => c,
            // The inflate thread is gone without saying: the blob failed first.
            Err(_) if cancel.is_cancelled() => return Err(cancelled()),
            Err(_) => Compression::None,
        };
        Ok(LayerStream {
            tar: TarReader {
                chunks: tar_rx,
                recycle: tar_back,
                current: Vec::new(),
                pos: 0,
                ended: None,
                hasher: Some(Hasher::new(crate::model::digest::Algorithm::Sha256)),
                size: 0,
                cancel: cancel.clone(),
                compression,
            },
            blob: blob_rx,
            skip,
            cancel: cancel.clone(),
            panics,
            threads: vec![fetching, inflating],
        })
    }

    /// Stops inflating what nobody will read, and waits for the blob's verdict (the
    /// whole blob is still read, so a damaged one is reported as such).
    pub fn abandon(self) -> io::Result<()> {
        self.skip.store(true, Ordering::SeqCst);
        let LayerStream {
            tar,
            blob,
            cancel,
            threads,
            ..
        } = self;
        drop(tar);
        let verdict = verdict(&blob, &cancel);
        join(threads, &cancel);
        verdict
    }

    /// Reads the tar to its end (so the diff_id covers every byte), then waits for the
    /// blob's verdict. Returns the tar's end (`Ok`, or the inflate error) and the verdict.
    pub fn finish(mut self) -> (io::Result<(Digest, u64)>, io::Result<()>) {
        let tail = io::copy(&mut self.tar, &mut io::sink()).map(|_| ());
        let verdict = verdict(&self.blob, &self.cancel);
        join(std::mem::take(&mut self.threads), &self.cancel);
        let hashed = tail.map(|()| {
            let hasher = self.tar.hasher.take().expect("hashed once");
            (hasher.finish(), self.tar.size)
        });
        (hashed, verdict)
    }

    /// The blob's compression, as its first bytes tell.
    pub fn compression(&self) -> Compression {
        self.tar.compression
    }
}

/// Waits for the threads to end once they have said all they will (so a panic of theirs is
/// recorded before anyone looks), unless the job was cancelled: then a thread may be stuck
/// in a read, and is left to end on its own.
fn join(threads: Vec<std::thread::JoinHandle<()>>, cancel: &Cancel) {
    if !cancel.is_cancelled() {
        for t in threads {
            let _ = t.join();
        }
    }
}

fn verdict(blob: &Receiver<io::Result<()>>, cancel: &Cancel) -> io::Result<()> {
    match recv(blob, cancel) {
        Ok(v) => v,
        Err(e) => Err(e),
    }
}

fn cancelled() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, crate::control::Cancelled)
}

/// Waits for a message, looking at the token meanwhile.
fn recv<T>(rx: &Receiver<T>, cancel: &Cancel) -> io::Result<T> {
    loop {
        match rx.recv_timeout(POLL) {
            Ok(v) => return Ok(v),
            Err(RecvTimeoutError::Timeout) => {
                if cancel.is_cancelled() {
                    return Err(cancelled());
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("a thread of the layer's pipeline stopped"))
            }
        }
    }
}

/// Starts a thread of the stream; a panic in it is recorded, and its channels close.
fn spawn(
    name: &str,
    panics: &Panics,
    work: impl FnOnce() + Send + 'static,
) -> io::Result<std::thread::JoinHandle<()>> {
    let panics = panics.clone();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
                panics
                    .0
                    .locked()
                    .get_or_insert_with(|| crate::control::panic_message(&*panic));
            }
        })
}

/// The fetch thread: reads the blob through its verifier into chunks; its verdict goes to
/// the caller, the end of the chunks to the inflate thread.
fn fetch<R: Read>(
    mut blob: VerifyingReader<R>,
    out: SyncSender<Piece>,
    buffers: Buffers,
    verdict: SyncSender<io::Result<()>>,
) {
    let result = loop {
        let mut chunk = buffers.take();
        match read_some(&mut blob, &mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                chunk.truncate(n);
                // Nobody reads any more: the rest is still read, for the verdict.
                let _ = out.send(Piece::Data(chunk));
            }
            Err(e) => break Err(e),
        }
    };
    let end = match &result {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    };
    let _ = out.send(Piece::End(end));
    let _ = verdict.send(result);
}

/// Fills as much of `buf` as one or more reads give, up to its end or the stream's.
fn read_some<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                // A chunk of a network read is enough: do not wait for a full one.
                if filled >= buf.len() / 4 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The inflate thread: detects the compression, inflates into tar chunks.
fn inflate(
    mut input: ChunkReader,
    out: SyncSender<Piece>,
    buffers: Buffers,
    kind: SyncSender<Compression>,
    skip: Arc<AtomicBool>,
) {
    let head = match input.fill_buf() {
        Ok(h) => h,
        Err(e) => {
            let _ = kind.send(Compression::None);
            let _ = out.send(Piece::End(Err(e)));
            return drain(&mut input);
        }
    };
    let compression = Compression::detect(head);
    let _ = kind.send(compression);
    let mut decoder: Box<dyn Read> = match compression {
        Compression::None => Box::new(&mut input),
        Compression::Gzip => Box::new(GzipDecoder::new(&mut input)),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(&mut input) {
            Ok(d) => Box::new(d),
            Err(e) => {
                let _ = out.send(Piece::End(Err(e)));
                return drain(&mut input);
            }
        },
    };
    let end = loop {
        if skip.load(Ordering::SeqCst) {
            break None;
        }
        let mut chunk = buffers.take();
        match read_full(&mut decoder, &mut chunk) {
            Ok(0) => break Some(Ok(())),
            Ok(n) => {
                chunk.truncate(n);
                if out.send(Piece::Data(chunk)).is_err() {
                    break None;
                }
            }
            Err(e) => break Some(Err(e)),
        }
    };
    drop(decoder);
    if let Some(end) = end {
        let _ = out.send(Piece::End(end));
    }
    // The fetch thread finishes the blob for its verdict: take what it still sends.
    drain(&mut input)
}

fn drain(input: &mut ChunkReader) {
    while let Some(chunk) = input.next_chunk() {
        input.recycle.give(chunk);
    }
}

/// Fills `buf` unless the stream ends first.
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The inflate thread's view of the compressed chunks: a `BufRead`.
struct ChunkReader {
    chunks: Receiver<Piece>,
    recycle: Recycle,
    current: Vec<u8>,
    pos: usize,
    ended: Option<io::Result<()>>,
}

impl ChunkReader {
    fn new(chunks: Receiver<Piece>, recycle: Recycle) -> ChunkReader {
        ChunkReader {
            chunks,
            recycle,
            current: Vec::new(),
            pos: 0,
            ended: None,
        }
    }

    /// The next chunk, or `None` at the end (whatever it was).
    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if self.ended.is_some() {
            return None;
        }
        match self.chunks.recv() {
            Ok(Piece::Data(d)) => Some(d),
            Ok(Piece::End(end)) => {
                self.ended = Some(end);
                None
            }
            Err(_) => {
                self.ended = Some(Err(io::Error::other("the blob's reader stopped")));
                None
            }
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.current.len() {
            match self.next_chunk() {
                Some(chunk) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    self.recycle.give(used);
                    self.pos = 0;
                }
                None => {
                    return match &self.ended {
                        Some(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
                        _ => Ok(&[]),
                    };
                }
            }
        }
        Ok(&self.current[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.current.len());
    }
}

/// The caller's view of the tar stream: it hashes each chunk as it arrives (the diff_id)
/// and waits for chunks with an eye on the cancellation token.
pub struct TarReader {
    chunks: Receiver<Piece>,
    recycle: Recycle,
    current: Vec<u8>,
    pos: usize,
    ended: Option<io::Result<()>>,
    hasher: Option<Hasher>,
    size: u64,
    cancel: Cancel,
    compression: Compression,
}

impl Read for TarReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.current.len() {
            if let Some(end) = &self.ended {
                return match end {
                    Ok(()) => Ok(0),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
            }
            match recv(&self.chunks, &self.cancel)? {
                Piece::Data(chunk) => {
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    self.size += chunk.len() as u64;
                    let used = std::mem::replace(&mut self.current, chunk);
                    self.recycle.give(used);
                    self.pos = 0;
                }
                Piece::End(end) => self.ended = Some(end),
            }
        }
        let n = (self.current.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
