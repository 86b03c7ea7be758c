//! The disk spool: where deliveries wait, fsynced, while Kafka does not acknowledge, so that
//! WooCommerce still gets its 2xx and never counts the failures that disable a webhook.
//!
//! Segments are JSON lines. The active segment takes appends; the drain seals it, re-sends
//! every record of each sealed segment in order and deletes the segment once all are
//! acknowledged. A torn last line (a crash mid-append) was never answered 2xx and is skipped.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;
use woostream_core::kafka::RenewingProducer;
use woostream_core::retry::{self, Policy};

use crate::metrics::Metrics;
use crate::publish::{send, Record};

pub struct Spool {
    dir: PathBuf,
    active: Mutex<Active>,
    pending_bytes: AtomicU64,
    max_bytes: u64,
    /// The last append was refused (no room left) or failed on the disk (full, read-only,
    /// gone); cleared by the next append that succeeds or a drain that frees room.
    refusing: AtomicBool,
    metrics: Metrics,
}

struct Active {
    file: File,
    seq: u64,
    bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({0} bytes pending)")]
    Full(u64),
    #[error("writing the spool: {0}")]
    Io(#[from] std::io::Error),
}

fn active_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:020}.jsonl"))
}

fn sealed_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:020}.sealed"))
}

fn seq_of(path: &Path) -> Option<u64> {
    path.file_stem()?
        .to_str()?
        .strip_prefix("segment-")?
        .parse()
        .ok()
}

impl Spool {
    /// Opens (creating) the spool directory; segments left by an earlier run are sealed for
    /// draining.
    pub fn open(dir: &Path, max_bytes: u64, metrics: Metrics) -> anyhow::Result<Spool> {
        fs::create_dir_all(dir)
            .with_context(|| format!("creating spool directory {}", dir.display()))?;
        let mut max_seq = 0;
        let mut pending = 0;
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let Some(seq) = seq_of(&path) else { continue };
            max_seq = max_seq.max(seq);
            pending += fs::metadata(&path)?.len();
            if path.extension().is_some_and(|e| e == "jsonl") {
                fs::rename(&path, sealed_path(dir, seq))?;
            }
        }
        let seq = max_seq + 1;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(active_path(dir, seq))
            .with_context(|| format!("opening a spool segment in {}", dir.display()))?;
        metrics.spool_pending_bytes.set(pending as i64);
        Ok(Spool {
            dir: dir.to_path_buf(),
            active: Mutex::new(Active {
                file,
                seq,
                bytes: 0,
            }),
            pending_bytes: AtomicU64::new(pending),
            max_bytes,
            refusing: AtomicBool::new(false),
            metrics,
        })
    }

    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes.load(Ordering::Relaxed)
    }

    /// Whether the spool takes deliveries: its last append did not fail or find it full, or a
    /// drain has freed room since.
    pub fn is_writable(&self) -> bool {
        !self.refusing.load(Ordering::Relaxed)
    }

    /// Appends and fsyncs one record; returns once it is on disk.
    pub async fn append(self: &Arc<Self>, record: &Record) -> Result<(), SpoolError> {
        let mut line = serde_json::to_vec(record).expect("records serialise");
        line.push(b'\n');
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.append_blocking(&line))
            .await
            .map_err(|e| SpoolError::Io(std::io::Error::other(e)))?
    }

    fn append_blocking(&self, line: &[u8]) -> Result<(), SpoolError> {
        let pending = self.pending_bytes();
        if pending + line.len() as u64 > self.max_bytes {
            self.refusing.store(true, Ordering::Relaxed);
            return Err(SpoolError::Full(pending));
        }
        let mut active = self.active.lock().expect("spool lock poisoned");
        let written = active
            .file
            .write_all(line)
            .and_then(|()| active.file.sync_data());
        self.refusing.store(written.is_err(), Ordering::Relaxed);
        written?;
        active.bytes += line.len() as u64;
        let now = self
            .pending_bytes
            .fetch_add(line.len() as u64, Ordering::Relaxed);
        self.metrics
            .spool_pending_bytes
            .set((now + line.len() as u64) as i64);
        Ok(())
    }

    /// Seals the active segment if it holds anything; returns the sealed segments, oldest first.
    fn seal(&self) -> std::io::Result<Vec<PathBuf>> {
        {
            let mut active = self.active.lock().expect("spool lock poisoned");
            if active.bytes > 0 {
                let next = active.seq + 1;
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(active_path(&self.dir, next))?;
                let old = std::mem::replace(
                    &mut *active,
                    Active {
                        file,
                        seq: next,
                        bytes: 0,
                    },
                );
                drop(old.file);
                fs::rename(
                    active_path(&self.dir, old.seq),
                    sealed_path(&self.dir, old.seq),
                )?;
            }
        }
        let mut sealed: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "sealed"))
            .collect();
        sealed.sort();
        Ok(sealed)
    }

    /// Re-sends everything spooled so far; returns how many records were drained. Stops at the
    /// first segment Kafka does not fully acknowledge (it is retried on the next call).
    pub async fn drain_once(
        self: &Arc<Self>,
        producer: &RenewingProducer,
        timeout: Duration,
    ) -> anyhow::Result<usize> {
        let me = self.clone();
        let segments = tokio::task::spawn_blocking(move || me.seal()).await??;
        let mut drained = 0;
        for segment in segments {
            let size = fs::metadata(&segment)?.len();
            let records = read_segment(&segment)?;
            let results = join_all(records.iter().map(|r| send(producer, r, timeout))).await;
            if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
                anyhow::bail!("Kafka still does not acknowledge spooled records: {e}");
            }
            fs::remove_file(&segment)?;
            self.refusing.store(false, Ordering::Relaxed);
            drained += records.len();
            let _ = self
                .pending_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                    Some(p.saturating_sub(size))
                });
            self.metrics
                .spool_pending_bytes
                .set(self.pending_bytes() as i64);
            self.metrics
                .spooled
                .with_label_values(&["drained"])
                .inc_by(records.len() as u64);
            tracing::info!(records = records.len(), segment = %segment.display(), "Drained spooled records into Kafka.");
        }
        Ok(drained)
    }

    /// Drains whenever something is pending and the broker answers, until `shutdown`.
    pub async fn drain_forever(
        self: Arc<Self>,
        producer: Arc<RenewingProducer>,
        timeout: Duration,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // A broker that answers probes but refuses records: back off from 1 s to 30 s instead
        // of hammering it every second.
        let mut backoff = Policy::new(Duration::from_secs(1), Duration::from_secs(30)).backoff();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.pending_bytes() == 0 {
                continue;
            }
            // While the broker is away, wait for it rather than for a backoff: the spool
            // drains the moment a probe finds it again.
            if !producer.is_reachable() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = producer.reachable() => backoff.reset(),
                }
            }
            match self.drain_once(&producer, timeout).await {
                Ok(_) => backoff.reset(),
                Err(e) if !producer.is_reachable() => {
                    tracing::warn!(error = %e, pending_bytes = self.pending_bytes(), "Spool not drained yet; draining again when the broker answers.");
                }
                Err(e) => {
                    let wait = backoff.next_wait().expect("no attempt limit");
                    tracing::warn!(error = %e, pending_bytes = self.pending_bytes(), retry_in_ms = wait.as_millis() as u64, "Spool not drained yet.");
                    if retry::pause(wait, &shutdown).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn read_segment(path: &Path) -> anyhow::Result<Vec<Record>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        match serde_json::from_str::<Record>(&line) {
            Ok(r) => out.push(r),
            // Only a torn last line can fail; it was never acknowledged to WooCommerce.
            Err(e) => {
                tracing::warn!(segment = %path.display(), line = n + 1, error = %e, "Skipping a torn spool line.")
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u8) -> Record {
        Record {
            topic: "t".into(),
            key: vec![i],
            value: vec![0, 1, 2, i],
            headers: vec![("h".into(), "v".into())],
        }
    }

    fn metrics() -> Metrics {
        Metrics::register(&prometheus::Registry::new()).unwrap()
    }

    #[tokio::test]
    async fn appends_survive_a_restart_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 20, metrics()).unwrap());
        spool.append(&record(1)).await.unwrap();
        spool.append(&record(2)).await.unwrap();
        assert!(spool.pending_bytes() > 0);
        drop(spool);
        // A crash mid-append leaves half a line.
        let active = fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        OpenOptions::new()
            .append(true)
            .open(&active)
            .unwrap()
            .write_all(b"{\"topic\":\"t\",\"ke")
            .unwrap();

        let spool = Arc::new(Spool::open(dir.path(), 1 << 20, metrics()).unwrap());
        let sealed = spool.seal().unwrap();
        assert_eq!(sealed.len(), 1);
        assert_eq!(
            read_segment(&sealed[0]).unwrap(),
            vec![record(1), record(2)]
        );
    }

    #[tokio::test]
    async fn a_full_spool_refuses_instead_of_filling_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 100, metrics()).unwrap());
        spool.append(&record(1)).await.unwrap();
        assert!(spool.is_writable());
        assert!(matches!(
            spool.append(&record(2)).await,
            Err(SpoolError::Full(_))
        ));
        assert!(
            !spool.is_writable(),
            "a full spool is not ready to take deliveries"
        );
    }
}
