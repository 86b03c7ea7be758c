//! The disk spool: where deliveries wait, fsynced, while Kafka does not acknowledge, so that
//! WooCommerce still gets its 2xx and never counts the failures that disable a webhook.
//!
//! A segment starts with a magic line and holds frames: the payload's length and CRC-32, then
//! the record as JSON. The active segment takes appends (fsynced before the answer); the drain
//! seals it, re-sends every record of each sealed segment in order and deletes the segment once
//! all are acknowledged. Reading back:
//! - a torn tail (a crash mid-append, never answered 2xx) is left out;
//! - a frame whose bytes changed on disk is kept aside in a `quarantine-*.bin` file, counted
//!   and logged, and reading resumes at the next intact frame, so one bad record loses no
//!   other;
//! - an append that fails (a full disk) is cut back off the file, so the next record is never
//!   glued onto a fragment.
//!
//! One producer owns a directory (a lock file); files are 0600 and the directory 0700, since
//! the records hold personal data. Segments of the JSON-lines format of earlier versions are
//! still read.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
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
    /// Held (locked) while this spool is open.
    _lock: File,
    active: Mutex<Active>,
    pending_bytes: AtomicU64,
    max_bytes: u64,
    /// The last append was refused (no room left) or failed on the disk (full, read-only,
    /// gone); cleared by the next append that succeeds or a drain that frees room.
    refusing: AtomicBool,
    metrics: Metrics,
    /// Carries out the erasure requests kept here (`privacy.erase_on_customer_deleted`).
    eraser: std::sync::OnceLock<Arc<crate::personal::Eraser>>,
}

struct Active {
    file: File,
    seq: u64,
    /// The file's length: the magic line and every complete frame.
    len: u64,
    records: u64,
}

/// The first bytes of every framed segment.
const MAGIC: &[u8] = b"WOOSTREAM-SPOOL 2\n";
/// Larger "lengths" are damage, not records (a body is at most a few MiB).
const MAX_FRAME: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({0} bytes pending)")]
    Full(u64),
    #[error("writing the spool: {0}")]
    Io(#[from] std::io::Error),
}

fn active_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:020}.active"))
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
        private_dir(dir).with_context(|| format!("creating spool directory {}", dir.display()))?;
        let lock = private_file(&dir.join(".lock"))
            .with_context(|| format!("opening the lock of {}", dir.display()))?;
        if lock.try_lock().is_err() {
            anyhow::bail!(
                "spool directory {} is in use by another producer: give each replica its own (producer.spool_dir)",
                dir.display()
            );
        }
        let mut max_seq = 0;
        let mut pending = 0;
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let Some(seq) = seq_of(&path) else { continue };
            if path.extension().is_some_and(|e| e == "bin") {
                continue; // quarantined bytes, kept for an operator
            }
            max_seq = max_seq.max(seq);
            pending += fs::metadata(&path)?.len();
            // An active segment of an earlier run (".jsonl" before the framed format).
            if path
                .extension()
                .is_some_and(|e| e == "active" || e == "jsonl")
            {
                fs::rename(&path, sealed_path(dir, seq))?;
            }
        }
        let seq = max_seq + 1;
        let active = Active::create(dir, seq)
            .with_context(|| format!("opening a spool segment in {}", dir.display()))?;
        metrics.spool_pending_bytes.set(pending as i64);
        Ok(Spool {
            dir: dir.to_path_buf(),
            _lock: lock,
            active: Mutex::new(active),
            pending_bytes: AtomicU64::new(pending),
            max_bytes,
            refusing: AtomicBool::new(false),
            metrics,
            eraser: std::sync::OnceLock::new(),
        })
    }

    /// The eraser that carries out the erasure requests kept in the spool.
    pub fn carry_erasures_with(&self, eraser: Arc<crate::personal::Eraser>) {
        let _ = self.eraser.set(eraser);
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
        let frame = frame(record);
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.append_blocking(&frame))
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
        if let Err(e) = written {
            // Cut a partial frame back off, so the next record starts on a frame boundary.
            let len = active.len;
            let _ = active.file.set_len(len);
            return Err(e.into());
        }
        active.len += line.len() as u64;
        active.records += 1;
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
            if active.records > 0 {
                let next = Active::create(&self.dir, active.seq + 1)?;
                let old = std::mem::replace(&mut *active, next);
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
            let (records, damaged) = read_segment(&segment)?;
            if !damaged.is_empty() {
                self.quarantine(&segment, &damaged)?;
            }
            // Subject keys first: a sealed record must never be in Kafka before its key.
            // Erasure requests last: carried out, not sent, once what came before is in.
            let (erasures, records_to_send): (Vec<&Record>, Vec<&Record>) = records
                .iter()
                .partition(|r| r.topic == crate::publish::ERASURE_REQUESTS);
            let (keys, rest): (Vec<&Record>, Vec<&Record>) = records_to_send
                .into_iter()
                .partition(|r| crate::personal::is_key_record(r));
            for batch in [keys, rest] {
                let results = join_all(batch.iter().map(|r| send(producer, r, timeout))).await;
                if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
                    anyhow::bail!("Kafka still does not acknowledge spooled records: {e}");
                }
            }
            for record in erasures {
                self.carry_out(record).await?;
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

    /// Carries out one kept erasure request (idempotent: its erasure id stays the same).
    async fn carry_out(&self, record: &Record) -> anyhow::Result<()> {
        let Some(request) = record.as_erasure_request() else {
            tracing::error!("An erasure request in the spool cannot be read; it is left out.");
            return Ok(());
        };
        let Some(eraser) = self.eraser.get() else {
            tracing::error!(erasure = %request.erasure_id, shop = %request.shop_id, "An erasure request waits in the spool but this producer does not erase (privacy.erase_on_customer_deleted or sealing is off): carry it out with `woostream erase`.");
            return Ok(());
        };
        eraser
            .carry_out(&request)
            .await
            .map_err(|e| anyhow::anyhow!("carrying out erasure {}: {e:#}", request.erasure_id))?;
        self.metrics
            .erasures
            .with_label_values(&[&request.shop_id, "erased_from_spool"])
            .inc();
        tracing::info!(erasure = %request.erasure_id, shop = %request.shop_id, "Carried out an erasure kept in the spool.");
        Ok(())
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

/// A record as a frame: payload length and CRC-32 (big-endian), then the JSON payload.
fn frame(record: &Record) -> Vec<u8> {
    let payload = serde_json::to_vec(record).expect("records serialise");
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The intact record framed at `pos`, and where the next frame starts.
fn frame_at(data: &[u8], pos: usize) -> Option<(Record, usize)> {
    let header = data.get(pos..pos + 8)?;
    let len = u32::from_be_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(header[4..].try_into().ok()?);
    if len > MAX_FRAME {
        return None;
    }
    let payload = data.get(pos + 8..pos + 8 + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let record = serde_json::from_slice(payload).ok()?;
    Some((record, pos + 8 + len))
}

/// Every intact record of a framed segment, and the damaged stretches between them. Trailing
/// bytes that do not make a whole frame are a torn append (never answered 2xx) and are left
/// out; a whole last frame that fails its check is damage.
fn read_frames(data: &[u8]) -> (Vec<Record>, Vec<Vec<u8>>) {
    let (mut records, mut damaged) = (Vec::new(), Vec::new());
    let mut pos = MAGIC.len();
    let mut bad: Option<usize> = None;
    while pos < data.len() {
        match frame_at(data, pos) {
            Some((record, next)) => {
                if let Some(start) = bad.take() {
                    damaged.push(data[start..pos].to_vec());
                }
                records.push(record);
                pos = next;
            }
            // Resynchronise byte by byte: a frame's length may be what was damaged.
            None => {
                bad.get_or_insert(pos);
                pos += 1;
            }
        }
    }
    if let Some(start) = bad {
        let declared = data
            .get(start..start + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize);
        let whole_frame = declared.is_some_and(|len| start + 8 + len == data.len());
        if whole_frame {
            damaged.push(data[start..].to_vec());
        } else {
            tracing::warn!(
                bytes = data.len() - start,
                "Leaving out a torn spool append (never acknowledged)."
            );
        }
    }
    (records, damaged)
}

fn read_segment(path: &Path) -> anyhow::Result<(Vec<Record>, Vec<Vec<u8>>)> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(read_segment_bytes(&data))
}

/// A segment's bytes as the spool reads them: its intact records and its damaged stretches.
/// Public for the fuzz targets (`make fuzz`).
/// Drains `spool` until it is empty, trying again (1 s doubling to 10 s) while `limit` lasts;
/// how many records went to Kafka, or why the spool is not empty yet.
pub async fn drain_until_empty(
    spool: &Arc<Spool>,
    producer: &RenewingProducer,
    timeout: Duration,
    limit: Duration,
) -> anyhow::Result<usize> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut backoff = Policy::new(Duration::from_secs(1), Duration::from_secs(10)).backoff();
    let mut drained = 0;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let failure = match tokio::time::timeout(left, spool.drain_once(producer, timeout)).await {
            Ok(Ok(n)) => {
                drained += n;
                if spool.pending_bytes() == 0 {
                    return Ok(drained);
                }
                anyhow::anyhow!("records were appended while draining")
            }
            Ok(Err(e)) => e,
            Err(_) => anyhow::anyhow!("Kafka did not acknowledge within {} s", limit.as_secs()),
        };
        let wait = backoff.next_wait().expect("no attempt limit");
        if tokio::time::Instant::now() + wait >= deadline {
            return Err(failure.context(format!(
                "{} bytes remain after {} s",
                spool.pending_bytes(),
                limit.as_secs()
            )));
        }
        tracing::info!(
            error = format!("{failure:#}"),
            retry_in_ms = wait.as_millis() as u64,
            "The spool is not drained yet."
        );
        tokio::time::sleep(wait).await;
    }
}

pub fn read_segment_bytes(data: &[u8]) -> (Vec<Record>, Vec<Vec<u8>>) {
    if data.starts_with(MAGIC) {
        return read_frames(data);
    }
    // A segment of the JSON-lines format of earlier versions.
    let mut out = Vec::new();
    for (n, line) in data.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => out.push(r),
            // Only a torn last line can fail; it was never acknowledged to WooCommerce.
            Err(e) => {
                tracing::warn!(line = n + 1, error = %e, "Skipping a torn spool line.")
            }
        }
    }
    (out, Vec::new())
}

/// The bytes of a segment holding `records` (seeds for the fuzz targets).
pub fn segment_bytes(records: &[Record]) -> Vec<u8> {
    let mut data = MAGIC.to_vec();
    for r in records {
        data.extend_from_slice(&frame(r));
    }
    data
}

impl Active {
    /// A new active segment: created 0600, the magic line written and synced.
    fn create(dir: &Path, seq: u64) -> std::io::Result<Active> {
        let mut file = private_file(&active_path(dir, seq))?;
        file.write_all(MAGIC)?;
        file.sync_data()?;
        Ok(Active {
            file,
            seq,
            len: MAGIC.len() as u64,
            records: 0,
        })
    }
}

impl Spool {
    /// Keeps damaged bytes beside the spool for an operator, counted and logged.
    fn quarantine(&self, segment: &Path, damaged: &[Vec<u8>]) -> std::io::Result<()> {
        let seq = seq_of(segment).unwrap_or_default();
        let path = self.dir.join(format!("segment-{seq:020}.quarantine.bin"));
        let mut file = private_file(&path)?;
        for d in damaged {
            file.write_all(d)?;
        }
        file.sync_data()?;
        self.metrics
            .spooled
            .with_label_values(&["damaged"])
            .inc_by(damaged.len() as u64);
        tracing::error!(segment = %segment.display(), damaged = damaged.len(), kept_in = %path.display(), "Spooled records were damaged on disk; the rest are drained, the damaged bytes kept aside.");
        Ok(())
    }
}

/// Creates `dir` (and its parents) readable by this user only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Opens (creating, appending) a file readable by this user only.
fn private_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn any_record() -> impl Strategy<Value = Record> {
            (
                "[a-z.]{1,20}",
                prop::collection::vec(any::<u8>(), 0..40),
                prop::collection::vec(any::<u8>(), 0..400),
            )
                .prop_map(|(topic, key, value)| Record {
                    topic,
                    key,
                    value,
                    headers: vec![("h".into(), "v".into())],
                })
        }

        proptest! {
            /// Whatever the bytes, reading a segment never panics and finds only records that
            /// were written.
            #[test]
            fn any_bytes_read_without_panicking(tail in prop::collection::vec(any::<u8>(), 0..2000)) {
                let mut data = MAGIC.to_vec();
                data.extend_from_slice(&tail);
                let _ = read_frames(&data);
            }

            /// Every record comes back; a byte changed anywhere loses at most the record it
            /// hit, and a torn tail loses only the append it tore.
            #[test]
            fn one_damaged_byte_loses_at_most_its_own_record(
                records in prop::collection::vec(any_record(), 1..8),
                at in any::<prop::sample::Index>(),
                flip in 1u8..=255,
                torn in 0usize..64,
            ) {
                let mut data = MAGIC.to_vec();
                for r in &records {
                    data.extend_from_slice(&frame(r));
                }
                let (read, damaged) = read_frames(&data);
                prop_assert_eq!(&read, &records);
                prop_assert!(damaged.is_empty());

                let i = MAGIC.len() + at.index(data.len() - MAGIC.len());
                let mut hit = data.clone();
                hit[i] ^= flip;
                let (read, _) = read_frames(&hit);
                prop_assert!(read.len() + 1 >= records.len(), "{} of {}", read.len(), records.len());
                prop_assert!(read.iter().all(|r| records.contains(r)));

                let mut torn_data = data.clone();
                let extra = frame(&records[0]);
                torn_data.extend_from_slice(&extra[..torn.min(extra.len() - 1)]);
                let (read, damaged) = read_frames(&torn_data);
                prop_assert_eq!(&read, &records);
                prop_assert!(damaged.is_empty());
            }
        }
    }

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

    fn active_segment(dir: &Path) -> PathBuf {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "active"))
            .expect("an active segment")
    }

    /// Three records spooled, the spool closed (as by a crash), `damage` done to the file,
    /// the spool opened again: what its sealed segment reads back.
    async fn spool_damaged(
        damage: impl FnOnce(&mut Vec<u8>, &[usize]),
    ) -> (Vec<Record>, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 20, metrics()).unwrap());
        for i in 1..=3 {
            spool.append(&record(i)).await.unwrap();
        }
        drop(spool);
        let path = active_segment(dir.path());
        let mut data = fs::read(&path).unwrap();
        // Where each frame starts.
        let mut starts = vec![MAGIC.len()];
        for _ in 0..2 {
            let at = *starts.last().unwrap();
            starts.push(frame_at(&data, at).unwrap().1);
        }
        damage(&mut data, &starts);
        fs::write(&path, &data).unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 20, metrics()).unwrap());
        let sealed = spool.seal().unwrap();
        assert_eq!(sealed.len(), 1);
        read_segment(&sealed[0]).unwrap()
    }

    #[tokio::test]
    async fn appends_survive_a_restart_and_a_torn_append_is_left_out() {
        let (records, damaged) = spool_damaged(|data, _| {
            // A crash mid-append: a header announcing 100 bytes, and 10 of them.
            data.extend_from_slice(&100u32.to_be_bytes());
            data.extend_from_slice(&[0, 0, 0, 0]);
            data.extend_from_slice(b"{\"topic\":\"");
        })
        .await;
        assert_eq!(records, vec![record(1), record(2), record(3)]);
        assert!(damaged.is_empty(), "a torn append is not damage");
    }

    #[tokio::test]
    async fn a_bit_flip_loses_only_its_own_record() {
        // In a payload: the CRC catches it.
        let (records, damaged) = spool_damaged(|data, starts| data[starts[1] + 12] ^= 0x01).await;
        assert_eq!(records, vec![record(1), record(3)]);
        assert_eq!(damaged.len(), 1);
        // In a length: reading resynchronises on the next intact frame.
        let (records, damaged) = spool_damaged(|data, starts| data[starts[1]] ^= 0x40).await;
        assert_eq!(records, vec![record(1), record(3)]);
        assert_eq!(damaged.len(), 1);
        // In the last, whole frame: damage, not a torn append.
        let (records, damaged) = spool_damaged(|data, starts| data[starts[2] + 9] ^= 0x20).await;
        assert_eq!(records, vec![record(1), record(2)]);
        assert_eq!(damaged.len(), 1);
    }

    #[tokio::test]
    async fn damaged_bytes_are_kept_aside_counted_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics();
        let spool = Spool::open(dir.path(), 1 << 20, m.clone()).unwrap();
        spool
            .quarantine(&sealed_path(dir.path(), 7), &[b"junk".to_vec()])
            .unwrap();
        let kept = dir.path().join(format!("segment-{:020}.quarantine.bin", 7));
        assert_eq!(fs::read(&kept).unwrap(), b"junk");
        assert_eq!(m.spooled.with_label_values(&["damaged"]).get(), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&kept), 0o600);
        assert_eq!(mode(&active_segment(dir.path())), 0o600);
    }

    #[tokio::test]
    async fn one_directory_has_one_owner() {
        let dir = tempfile::tempdir().unwrap();
        let first = Spool::open(dir.path(), 1 << 20, metrics()).unwrap();
        let second = Spool::open(dir.path(), 1 << 20, metrics());
        let err = format!("{:#}", second.err().expect("a second owner is refused"));
        assert!(err.contains("in use by another producer"), "{err}");
        drop(first);
        assert!(Spool::open(dir.path(), 1 << 20, metrics()).is_ok());
    }

    #[tokio::test]
    async fn segments_of_the_earlier_json_lines_format_still_drain() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        for i in 1..=2 {
            lines.extend(serde_json::to_vec(&record(i)).unwrap());
            lines.push(b'\n');
        }
        lines.extend_from_slice(b"{\"topic\":\"t\",\"ke");
        fs::write(dir.path().join(format!("segment-{:020}.jsonl", 3)), &lines).unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 20, metrics()).unwrap());
        let sealed = spool.seal().unwrap();
        assert_eq!(sealed.len(), 1);
        let (records, damaged) = read_segment(&sealed[0]).unwrap();
        assert_eq!(records, vec![record(1), record(2)]);
        assert!(damaged.is_empty());
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
