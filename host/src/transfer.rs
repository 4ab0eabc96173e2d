//! Streams S3 objects into the output archive. Up to `concurrency` units (an
//! object, or a byte range of a large one) are fetched at once, each through
//! a bounded channel, while the writer consumes them strictly in plan order.
//! Memory is bounded by concurrency x CHANNEL_CHUNKS body chunks, whatever
//! the object sizes; nothing is staged on disk.
use crate::archive::ArchiveWriter;
use crate::s3::S3Store;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

const CHANNEL_CHUNKS: usize = 16;

/// How objects are fetched.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Units (objects or ranges) in flight at once.
    pub concurrency: usize,
    /// Objects larger than this are fetched as concurrent ranged GETs...
    pub range_threshold: u64,
    /// ...of this size.
    pub range_size: u64,
    /// Stops the transfer between chunks; the writer is then dropped, which
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
    /// For a multipart ETag: the part size proven to reproduce it, if any.
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

type Chunk = Result<Bytes, String>;

struct Unit {
    rx: mpsc::Receiver<Chunk>,
    /// Held until the writer has drained the unit: bounds buffered memory.
    _permit: OwnedSemaphorePermit,
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
    progress: indicatif::ProgressBar,
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
                for range in ranges(job.size, &config) {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
                    tokio::spawn(fetch(s3.clone(), job.clone(), range, tx));
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
            progress.set_message(format!("object {}/{count}", done + 1));
            let fail = |message: String| TransferError {
                bucket: job.bucket.clone(),
                key: job.key.clone(),
                path: job.path.clone(),
                message,
            };
            let mut reader = JobReader {
                units: &unit_rx,
                pending_units: unit_count(job.size, &config),
                current: None,
                buffer: Bytes::new(),
                remaining: job.size,
                hasher: Sha256::new(),
                etag: job
                    .etag
                    .as_deref()
                    .and_then(|e| crate::etag::EtagCheck::new(e, job.size, None))
                    .filter(|c| c.is_multipart()),
                progress: &progress,
                cancel: &config.cancel,
            };
            writer
                .add(&job.path, job.size, &mut reader)
                .map_err(|e| fail(e.to_string()))?;
            reader.finish().map_err(|e| fail(e.to_string()))?;
            let part_size = match reader.etag.take().map(|c| c.finish()) {
                Some(Ok(size)) => size,
                Some(Err(why)) => {
                    tracing::warn!(
                        "s3://{}/{}: no common part size reproduces its ETag ({why}); export.json records no part_size for it",
                        job.bucket,
                        job.key
                    );
                    None
                }
                None => None,
            };
            archived.push(Archived {
                path: job.path.clone(),
                size: job.size,
                sha256: hex::encode(reader.hasher.finalize()),
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

async fn fetch(
    s3: Arc<S3Store>,
    job: ObjectJob,
    range: Option<(u64, u64)>,
    tx: mpsc::Sender<Chunk>,
) {
    let mut body = match s3
        .open(&job.bucket, &job.key, range, job.etag.as_deref())
        .await
    {
        Ok(b) => b,
        Err(e) => {
            let _ = tx.send(Err(e.to_string())).await;
            return;
        }
    };
    loop {
        match body.try_next().await {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(format!("reading the body: {e}"))).await;
                return;
            }
        }
    }
}

/// Reads one object's bytes from its units, in order, hashing them, and
/// refusing an object whose length differs from the planned size.
struct JobReader<'a> {
    units: &'a std::sync::mpsc::Receiver<Unit>,
    pending_units: u64,
    current: Option<Unit>,
    buffer: Bytes,
    remaining: u64,
    hasher: Sha256,
    /// Recomputes a multipart ETag for each part size consistent with it.
    etag: Option<crate::etag::EtagCheck>,
    progress: &'a indicatif::ProgressBar,
    cancel: &'a crate::cancel::Cancel,
}

impl JobReader<'_> {
    /// The next chunk of the object, or None at its end.
    fn next_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            if self.cancel.is_cancelled() {
                return Err(std::io::Error::other(format!(
                    "interrupted by {}",
                    self.cancel.why()
                )));
            }
            if self.current.is_none() {
                if self.pending_units == 0 {
                    return Ok(None);
                }
                self.pending_units -= 1;
                self.current = Some(
                    self.units
                        .recv()
                        .map_err(|_| std::io::Error::other("the fetcher stopped"))?,
                );
            }
            match self.current.as_mut().unwrap().rx.blocking_recv() {
                Some(Ok(chunk)) => return Ok(Some(chunk)),
                Some(Err(message)) => return Err(std::io::Error::other(message)),
                None => self.current = None,
            }
        }
    }

    /// Checks that the object ended exactly at its planned size.
    fn finish(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() || self.next_chunk()?.is_some_and(|c| !c.is_empty()) {
            return Err(std::io::Error::other(
                "the object is larger than planned; it changed since the plan",
            ));
        }
        Ok(())
    }
}

impl Read for JobReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        while self.buffer.is_empty() {
            match self.next_chunk()? {
                Some(chunk) => self.buffer = chunk,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "the object ended {} bytes short of its planned size; it changed since the plan",
                            self.remaining
                        ),
                    ));
                }
            }
        }
        let n = out
            .len()
            .min(self.buffer.len())
            .min(self.remaining as usize);
        out[..n].copy_from_slice(&self.buffer[..n]);
        self.hasher.update(&out[..n]);
        if let Some(etag) = &mut self.etag {
            etag.update(&out[..n]);
        }
        self.buffer = self.buffer.slice(n..);
        self.remaining -= n as u64;
        self.progress.inc(n as u64);
        Ok(n)
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
