//! Streams S3 objects into the output archive. Up to `concurrency` units (an
//! object, or a byte range of a large one) are fetched at once, each through
//! a bounded channel, while the writer consumes them strictly in plan order.
//!
//! The cost per byte is kept to what cannot be avoided: each fetcher gathers
//! the body's network-sized chunks into blocks of `BLOCK` bytes (one copy),
//! so that the writer wakes up, writes (straight to the file, no further
//! copy) and hashes (sha256, SHA-NI where the CPU has it) once per block,
//! not per chunk. A multipart ETag's part size is hashed for only when more
//! than one common size is consistent with its part count (MD5 costs 2.4x
//! sha256 per byte: `cargo bench --bench hashing`); those MD5s are computed
//! by the fetchers, on the blocking pool, in parallel with the writer: units
//! are cut at part boundaries so that each holds whole parts.
//! Memory is bounded by concurrency x (CHANNEL_BLOCKS + 2) blocks, whatever
//! the object sizes; nothing is staged on disk.
use crate::archive::ArchiveWriter;
use crate::etag::{EtagCheck, PartHasher};
use crate::observe::Observer;
use crate::s3::S3Store;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// What the writer receives at once: network chunks gathered to this size.
const BLOCK: usize = 1 << 20;
/// Blocks queued per unit, besides the one being filled and the one written.
const CHANNEL_BLOCKS: usize = 2;

/// How objects are fetched.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Units (objects or ranges) in flight at once.
    pub concurrency: usize,
    /// Objects larger than this are fetched as concurrent ranged GETs...
    pub range_threshold: u64,
    /// ...of about this size (rounded down to a multiple of the part size of
    /// a multipart ETag, so that its parts can be hashed in parallel).
    pub range_size: u64,
    /// Stops the transfer between blocks; the writer is then dropped, which
    /// removes the partial archive.
    pub cancel: crate::cancel::Cancel,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            concurrency: 8,
            range_threshold: 64 << 20,
            range_size: 16 << 20,
            cancel: Default::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ObjectJob {
    pub bucket: String,
    pub key: String,
    pub path: String,
    pub size: u64,
    /// The ETag seen when planning; the GET requires it (If-Match).
    pub etag: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Archived {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// For a multipart ETag: the part size that reproduces it, proven on the
    /// bytes, or the only common size consistent with its part count.
    pub part_size: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("archiving s3://{bucket}/{key} as {path}: {message}")]
pub struct TransferError {
    pub bucket: String,
    pub key: String,
    pub path: String,
    pub message: String,
}

/// What a fetcher sends the writer.
enum Msg {
    Data(Bytes),
    /// At the unit's end: the MD5 of each part it holds, per part size.
    Digests(Vec<(u64, Vec<[u8; 16]>)>),
    Failed(String),
}

struct Unit {
    rx: mpsc::Receiver<Msg>,
    /// Held until the writer has drained the unit: bounds buffered memory.
    _permit: OwnedSemaphorePermit,
}

/// How one object is fetched: its ETag check, the unit size, and the part
/// sizes whose MD5s the fetchers compute (their parts never straddle units).
struct JobPlan {
    etag: Option<EtagCheck>,
    /// The part size of a multipart ETag when only one is possible (no check).
    only_part_size: Option<u64>,
    config: TransferConfig,
    fetcher_md5: Arc<[u64]>,
}

impl JobPlan {
    fn new(job: &ObjectJob, config: &TransferConfig) -> JobPlan {
        let mut etag = job
            .etag
            .as_deref()
            .and_then(|e| EtagCheck::new(e, job.size, None))
            .filter(|c| c.is_multipart());
        let only_part_size = etag.as_ref().and_then(EtagCheck::only_candidate);
        if only_part_size.is_some() {
            etag = None;
        }
        let mut config = config.clone();
        let sizes = etag.as_ref().map(|e| e.part_sizes()).unwrap_or_default();
        let whole = job.size <= config.range_threshold;
        if !whole
            && let Some(&first) = sizes.first()
            && first <= config.range_size.saturating_mul(4)
        {
            config.range_size = first * (config.range_size / first).max(1);
        }
        let fetcher_md5: Arc<[u64]> = sizes
            .into_iter()
            .filter(|&p| whole || config.range_size.is_multiple_of(p))
            .collect();
        if let Some(etag) = &mut etag {
            fetcher_md5.iter().for_each(|&p| etag.hash_elsewhere(p));
        }
        JobPlan {
            etag,
            only_part_size,
            config,
            fetcher_md5,
        }
    }
}

/// The largest object imsflow transfers: S3's own limit for one object
/// (5 TiB). Sizes come from plans, which plugins write; a larger one is
/// refused before anything is fetched, so that no size can make the unit
/// count (or the arithmetic of ranges) explode.
pub const MAX_OBJECT_SIZE: u64 = 5 << 40;

/// The units of an object, generated lazily: the whole object (`None`), or
/// its byte ranges `[start, end)` in order. Checked arithmetic: the last
/// range ends at `size` whatever the sizes.
fn ranges(
    size: u64,
    config: &TransferConfig,
) -> impl Iterator<Item = Option<(u64, u64)>> + Send + 'static {
    let whole = size <= config.range_threshold;
    let step = config.range_size.max(1);
    let split = (!whole).then(|| {
        std::iter::successors(Some(0u64), move |&start| {
            start.checked_add(step).filter(|&next| next < size)
        })
        .map(move |start| Some((start, start.saturating_add(step).min(size))))
    });
    whole
        .then_some(None)
        .into_iter()
        .chain(split.into_iter().flatten())
}

/// How many units `ranges` yields, without generating them.
#[cfg(test)]
fn unit_count(size: u64, config: &TransferConfig) -> u64 {
    if size <= config.range_threshold {
        1
    } else {
        size.div_ceil(config.range_size.max(1))
    }
}

/// Streams `jobs` into `writer` in order and returns it with what was written.
pub async fn stream_into(
    s3: Arc<S3Store>,
    jobs: Vec<ObjectJob>,
    mut writer: ArchiveWriter,
    observer: Arc<dyn Observer>,
    config: &TransferConfig,
) -> Result<(ArchiveWriter, Vec<Archived>), TransferError> {
    if let Some(job) = jobs.iter().find(|j| j.size > MAX_OBJECT_SIZE) {
        return Err(TransferError {
            bucket: job.bucket.clone(),
            key: job.key.clone(),
            path: job.path.clone(),
            message: format!(
                "its planned size, {} bytes, is over the largest object S3 holds ({MAX_OBJECT_SIZE} bytes, 5 TiB); refusing the plan",
                job.size
            ),
        });
    }
    let concurrency = config.concurrency.max(1);
    let (unit_tx, unit_rx) = std::sync::mpsc::sync_channel::<Unit>(concurrency);
    let spawner = {
        let jobs = jobs.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(concurrency));
            // Units are made as slots free up: never more than `concurrency` exist.
            for job in jobs {
                let plan = JobPlan::new(&job, &config);
                let job = Arc::new(job);
                for range in ranges(job.size, &plan.config) {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (tx, rx) = mpsc::channel(CHANNEL_BLOCKS);
                    tokio::spawn(fetch(
                        s3.clone(),
                        job.clone(),
                        range,
                        plan.fetcher_md5.clone(),
                        tx,
                    ));
                    // Never blocks: at most `concurrency` units exist, and that is the capacity.
                    if unit_tx
                        .send(Unit {
                            rx,
                            _permit: permit,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        })
    };
    let config = config.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut archived = Vec::new();
        let count = jobs.len();
        for (done, job) in jobs.into_iter().enumerate() {
            observer.status(&format!("object {}/{count}", done + 1));
            let fail = |message: String| TransferError {
                bucket: job.bucket.clone(),
                key: job.key.clone(),
                path: job.path.clone(),
                message,
            };
            let plan = JobPlan::new(&job, &config);
            let only_part_size = plan.only_part_size;
            let (sha256, etag) =
                write_object(&unit_rx, &job, plan, &mut writer, &*observer).map_err(fail)?;
            let part_size = match etag.map(|c| c.finish()) {
                Some(Ok(size)) => size,
                Some(Err(why)) => {
                    tracing::warn!(
                        "s3://{}/{}: no common part size reproduces its ETag ({why}); export.json records no part_size for it",
                        job.bucket,
                        job.key
                    );
                    None
                }
                None => only_part_size,
            };
            archived.push(Archived {
                path: job.path.clone(),
                size: job.size,
                sha256,
                part_size,
            });
        }
        Ok((writer, archived))
    })
    .await
    .expect("archive writer thread panicked");
    spawner.abort();
    written
}

/// Writes one object from its units, in order, hashing it, and refusing a
/// unit whose length differs from what the plan implies. Returns its sha256
/// and the ETag check, fed.
fn write_object(
    units: &std::sync::mpsc::Receiver<Unit>,
    job: &ObjectJob,
    plan: JobPlan,
    writer: &mut ArchiveWriter,
    observer: &dyn Observer,
) -> Result<(String, Option<EtagCheck>), String> {
    let JobPlan {
        mut etag, config, ..
    } = plan;
    let mut member = writer
        .begin(&job.path, job.size)
        .map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    for range in ranges(job.size, &config) {
        let (start, end) = range.unwrap_or((0, job.size));
        let mut unit = units
            .recv()
            .map_err(|_| "the fetcher stopped".to_string())?;
        let mut got = 0u64;
        while let Some(msg) = unit.rx.blocking_recv() {
            if config.cancel.is_cancelled() {
                return Err(format!("interrupted by {}", config.cancel.why()));
            }
            match msg {
                Msg::Data(block) => {
                    if block.len() as u64 > end - start - got {
                        return Err(
                            "the object is larger than planned; it changed since the plan".into(),
                        );
                    }
                    member.write(&block).map_err(|e| e.to_string())?;
                    hasher.update(&block);
                    if let Some(etag) = &mut etag {
                        etag.update(&block);
                    }
                    got += block.len() as u64;
                    observer.bytes(block.len() as u64);
                }
                Msg::Digests(digests) => {
                    if let Some(etag) = &mut etag {
                        for (part_size, d) in digests {
                            etag.add_part_digests(part_size, &d);
                        }
                    }
                }
                Msg::Failed(message) => return Err(message),
            }
        }
        if got < end - start {
            return Err(format!(
                "the object ended {} bytes short of its planned size; it changed since the plan",
                job.size - start - got
            ));
        }
    }
    member.finish().map_err(|e| e.to_string())?;
    Ok((hex::encode(hasher.finalize()), etag))
}

/// Fetches one unit, gathering its body into blocks of `BLOCK` bytes and
/// hashing its parts of `md5_sizes` (it starts on a part boundary).
async fn fetch(
    s3: Arc<S3Store>,
    job: Arc<ObjectJob>,
    range: Option<(u64, u64)>,
    md5_sizes: Arc<[u64]>,
    tx: mpsc::Sender<Msg>,
) {
    let mut body = match s3
        .open(&job.bucket, &job.key, range, job.etag.as_deref())
        .await
    {
        Ok(b) => b,
        Err(e) => {
            let _ = tx.send(Msg::Failed(e.to_string())).await;
            return;
        }
    };
    let mut out = Blocks {
        tx,
        md5: (!md5_sizes.is_empty())
            .then(|| md5_sizes.iter().map(|&p| PartHasher::new(p)).collect()),
        block: BytesMut::new(),
    };
    loop {
        match body.try_next().await {
            Ok(Some(mut chunk)) => {
                while !chunk.is_empty() {
                    if out.block.is_empty() && chunk.len() >= BLOCK {
                        // Already large: handed on as it is.
                        if out.send(std::mem::take(&mut chunk)).await.is_err() {
                            return;
                        }
                        break;
                    }
                    if out.block.capacity() == 0 {
                        out.block.reserve(BLOCK);
                    }
                    let n = (BLOCK - out.block.len()).min(chunk.len());
                    out.block.extend_from_slice(&chunk.split_to(n));
                    if out.block.len() == BLOCK {
                        let block = out.block.split().freeze();
                        if out.send(block).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Ok(None) => {
                if !out.block.is_empty() {
                    let block = out.block.split().freeze();
                    if out.send(block).await.is_err() {
                        return;
                    }
                }
                if let Some(md5) = out.md5.take() {
                    let digests = md5_sizes
                        .iter()
                        .copied()
                        .zip(md5.into_iter().map(PartHasher::digests))
                        .collect();
                    let _ = out.tx.send(Msg::Digests(digests)).await;
                }
                return;
            }
            Err(e) => {
                let _ = out
                    .tx
                    .send(Msg::Failed(format!("reading the body: {e}")))
                    .await;
                return;
            }
        }
    }
}

/// A fetcher's output: blocks to the writer, and their MD5s by part.
struct Blocks {
    tx: mpsc::Sender<Msg>,
    md5: Option<Vec<PartHasher>>,
    block: BytesMut,
}

impl Blocks {
    /// Hands `block` to the writer while hashing it on the blocking pool.
    async fn send(&mut self, block: Bytes) -> Result<(), ()> {
        let hashing = self.md5.take().map(|mut md5| {
            let block = block.clone();
            tokio::task::spawn_blocking(move || {
                md5.iter_mut().for_each(|h| h.update(&block));
                md5
            })
        });
        let sent = self.tx.send(Msg::Data(block)).await;
        if let Some(hashing) = hashing {
            self.md5 = Some(hashing.await.map_err(|_| ())?);
        }
        sent.map_err(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_lazy_and_end_exactly_at_the_size_without_overflow() {
        let config = TransferConfig::default();
        let units: Vec<_> = ranges(40 << 20, &config).collect();
        assert_eq!(units, vec![None], "small objects are one unit");
        // The largest object: 327,680 ranges made one at a time, the last one
        // ending at the size.
        let count = ranges(MAX_OBJECT_SIZE, &config).count() as u64;
        assert_eq!(count, unit_count(MAX_OBJECT_SIZE, &config));
        assert_eq!(count, MAX_OBJECT_SIZE / config.range_size);
        assert_eq!(
            ranges(MAX_OBJECT_SIZE, &config).last(),
            Some(Some((MAX_OBJECT_SIZE - config.range_size, MAX_OBJECT_SIZE)))
        );
        // Where `start + step` would pass u64::MAX, the ranges still end at the size.
        let huge = TransferConfig {
            range_threshold: 0,
            range_size: 1 << 63,
            ..config.clone()
        };
        let units: Vec<_> = ranges(u64::MAX, &huge).collect();
        assert_eq!(units, vec![Some((0, 1 << 63)), Some((1 << 63, u64::MAX))]);
        assert_eq!(unit_count(u64::MAX, &huge), 2);
        // The first unit of an absurd size is there at once: nothing is collected.
        assert_eq!(
            ranges(u64::MAX, &config).next(),
            Some(Some((0, config.range_size)))
        );
        let odd = TransferConfig {
            range_threshold: 0,
            range_size: 3,
            ..TransferConfig::default()
        };
        assert_eq!(
            ranges(7, &odd).collect::<Vec<_>>(),
            vec![Some((0, 3)), Some((3, 6)), Some((6, 7))]
        );
        assert_eq!(unit_count(7, &odd), 3);
    }
}
