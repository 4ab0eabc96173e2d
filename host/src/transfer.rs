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
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            concurrency: 8,
            range_threshold: 64 << 20,
            range_size: 16 << 20,
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

fn ranges(size: u64, config: &TransferConfig) -> Vec<Option<(u64, u64)>> {
    if size <= config.range_threshold {
        return vec![None];
    }
    let step = config.range_size;
    (0..size)
        .step_by(step as usize)
        .map(|start| Some((start, (start + step).min(size))))
        .collect()
}

/// Streams `jobs` into `writer` in order and returns it with what was written.
pub async fn stream_into(
    s3: Arc<S3Store>,
    jobs: Vec<ObjectJob>,
    mut writer: ArchiveWriter,
    progress: indicatif::ProgressBar,
    config: &TransferConfig,
) -> Result<(ArchiveWriter, Vec<Archived>), TransferError> {
    let concurrency = config.concurrency.max(1);
    let (unit_tx, unit_rx) = std::sync::mpsc::sync_channel::<Unit>(concurrency);
    let units: Vec<(ObjectJob, Option<(u64, u64)>)> = jobs
        .iter()
        .flat_map(|j| {
            ranges(j.size, config)
                .into_iter()
                .map(move |r| (j.clone(), r))
        })
        .collect();
    let spawner = tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(concurrency));
        for (job, range) in units {
            let permit = slots
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
            tokio::spawn(fetch(s3.clone(), job, range, tx));
            // Never blocks: at most `concurrency` units exist, and that is the capacity.
            if unit_tx
                .send(Unit {
                    rx,
                    _permit: permit,
                })
                .is_err()
            {
                break;
            }
        }
    });
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
                pending_units: ranges(job.size, &config).len(),
                current: None,
                buffer: Bytes::new(),
                remaining: job.size,
                hasher: Sha256::new(),
                progress: &progress,
            };
            writer
                .add(&job.path, job.size, &mut reader)
                .map_err(|e| fail(e.to_string()))?;
            reader.finish().map_err(|e| fail(e.to_string()))?;
            archived.push(Archived {
                path: job.path.clone(),
                size: job.size,
                sha256: hex::encode(reader.hasher.finalize()),
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
    pending_units: usize,
    current: Option<Unit>,
    buffer: Bytes,
    remaining: u64,
    hasher: Sha256,
    progress: &'a indicatif::ProgressBar,
}

impl JobReader<'_> {
    /// The next chunk of the object, or None at its end.
    fn next_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
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
        self.buffer = self.buffer.slice(n..);
        self.remaining -= n as u64;
        self.progress.inc(n as u64);
        Ok(n)
    }
}
