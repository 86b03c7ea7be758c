//! The key topic as a role sees it: read whole at start, then followed by a thread. A value
//! sealed under a key this role has not read yet (made a moment ago by another producer
//! replica) waits for the follower to pass end markers written after it; a key still absent
//! then was deleted, and the value is erased.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chacha20poly1305::ChaCha20Poly1305;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::keyring::{KeyRecord, Keyring, SubjectKey};
use crate::config::{Config, KafkaConfig};
use crate::kafka::reading::{
    follower, partitions_of, read_to_end, reader, write_end_markers, END_MARKER,
};

/// How long a role waits for the follower to pass its end markers before it reports the key
/// topic as unreachable.
const SYNC_LIMIT: Duration = Duration::from_secs(60);

struct State {
    ring: Keyring,
    /// The next offset the follower reads, per partition.
    next: HashMap<i32, i64>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    wrapping: Option<ChaCha20Poly1305>,
    kafka: KafkaConfig,
    bootstrap: String,
    topic: String,
    partitions: Vec<i32>,
    stop: AtomicBool,
}

/// Stops the follower thread when the last handle goes.
struct Stopper(Arc<Shared>);

impl Drop for Stopper {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// A role's view of the key topic. Cheap to clone; blocking (librdkafka), so async callers
/// use it from blocking threads.
#[derive(Clone)]
pub struct SubjectKeys {
    shared: Arc<Shared>,
    _stopper: Arc<Stopper>,
}

/// The wrapping key configured, if any.
pub fn wrapping_key(config: &Config) -> anyhow::Result<Option<ChaCha20Poly1305>> {
    match crate::secret::resolve_secret(&config.privacy.key_wrapping_key, &None) {
        None => Ok(None),
        Some(k) if crate::sealing::key_is_valid(&k) => Ok(Some(crate::sealing::cipher(&k))),
        Some(_) => bail!("privacy.key_wrapping_key: {}", crate::sealing::KEY_EXPECTED),
    }
}

impl SubjectKeys {
    /// Reads the key topic to its end, then follows it. `by_subject`: also know whose each
    /// key is (to seal new values and to erase).
    pub fn start(
        config: &Config,
        bootstrap: &str,
        by_subject: bool,
    ) -> anyhow::Result<SubjectKeys> {
        let topic = config.topics.subject_keys.name.clone();
        let wrapping = wrapping_key(config)?;
        let mut ring = if by_subject {
            Keyring::by_subject()
        } else {
            Keyring::default()
        };
        let consumer = reader(&config.kafka, bootstrap, "subject-keys")?;
        let partitions = partitions_of(&consumer, &topic)?;
        let stops = write_end_markers(&config.kafka, bootstrap, &topic, &partitions)?;
        let mut unreadable = 0u64;
        read_to_end(
            &consumer,
            &topic,
            &stops.iter().map(|(p, o)| (*p, Some(*o))).collect::<Vec<_>>(),
            SYNC_LIMIT,
            |m| {
                if let Some(id) = key_id(m.key()) {
                    if let Err(e) = ring.apply(id, m.payload(), wrapping.as_ref()) {
                        unreadable += 1;
                        tracing::error!(topic = %m.topic(), error = %e, "A subject key cannot be read; values sealed under it stay sealed.");
                    }
                }
            },
        )
        .with_context(|| format!("reading the subject keys in {topic}"))?;
        if unreadable > 0 && wrapping.is_none() {
            bail!("{unreadable} subject keys in {topic} cannot be read: are they wrapped under a privacy.key_wrapping_key this configuration does not set?");
        }
        tracing::info!(%topic, keys = ring.len(), "Subject keys read.");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ring,
                next: stops.into_iter().collect(),
            }),
            changed: Condvar::new(),
            wrapping,
            kafka: config.kafka.clone(),
            bootstrap: bootstrap.to_string(),
            topic,
            partitions,
            stop: AtomicBool::new(false),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("subject-keys".into())
            .spawn(move || {
                if let Err(e) = follow(&thread_shared) {
                    tracing::error!(error = %format!("{e:#}"), "The subject key follower stopped.");
                }
            })
            .context("starting the subject key follower")?;
        Ok(SubjectKeys {
            _stopper: Arc::new(Stopper(shared.clone())),
            shared,
        })
    }

    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    /// The key with this id; `None` when it is deleted. An id not read yet waits for the
    /// follower to reach the topic's current end first.
    pub fn key(&self, id: &str) -> anyhow::Result<Option<Arc<SubjectKey>>> {
        {
            let s = self.lock();
            if let Some(k) = s.ring.get(id) {
                return Ok(Some(k));
            }
            if s.ring.is_deleted(id) {
                return Ok(None);
            }
        }
        self.sync()?;
        let mut s = self.lock();
        let key = s.ring.get(id);
        if key.is_none() {
            // Deleted, and its tombstone already compacted away: remember it as deleted.
            s.ring.apply(id, None, None).ok();
        }
        Ok(key)
    }

    /// The keys with these ids, from async code: known ones at once, the others after a sync
    /// on a blocking thread. `None`: deleted.
    pub async fn resolve(
        &self,
        ids: Vec<String>,
    ) -> anyhow::Result<HashMap<String, Option<Arc<SubjectKey>>>> {
        let mut out = HashMap::new();
        let mut unknown = Vec::new();
        {
            let s = self.lock();
            for id in ids {
                match s.ring.get(&id) {
                    Some(k) => {
                        out.insert(id, Some(k));
                    }
                    None if s.ring.is_deleted(&id) => {
                        out.insert(id, None);
                    }
                    None => unknown.push(id),
                }
            }
        }
        if !unknown.is_empty() {
            let me = self.clone();
            let found = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<_>> {
                unknown
                    .into_iter()
                    .map(|id| me.key(&id).map(|k| (id, k)))
                    .collect()
            })
            .await
            .context("looking up subject keys")??;
            out.extend(found);
        }
        Ok(out)
    }

    /// The key with this id if this role has read it (no waiting).
    pub fn cached(&self, id: &str) -> Option<Arc<SubjectKey>> {
        self.lock().ring.get(id)
    }

    /// The key new values of `subject` are sealed with, if this role has one.
    pub fn current(&self, subject: &str) -> Option<Arc<SubjectKey>> {
        self.lock().ring.current(subject)
    }

    /// Every key id of `subject`, as of the topic's current end.
    pub fn ids_of(&self, subject: &str) -> anyhow::Result<Vec<String>> {
        self.sync()?;
        Ok(self.lock().ring.ids_of(subject))
    }

    /// A new key for `subject` and its record (the record key, then the value), to be made
    /// durable before anything is sealed with it; [`SubjectKeys::insert`] then makes it the
    /// subject's current key.
    pub fn new_key(&self, subject: &str) -> (Arc<SubjectKey>, Vec<u8>, Vec<u8>) {
        let key = Arc::new(SubjectKey::generate());
        let record = KeyRecord::new(subject, &key, self.shared.wrapping.as_ref());
        let value = serde_json::to_vec(&record).expect("a key record serialises");
        (key.clone(), key.id().as_bytes().to_vec(), value)
    }

    pub fn insert(&self, subject: &str, key: Arc<SubjectKey>) {
        self.lock().ring.insert(subject, key);
    }

    /// Forgets deleted keys at once (the follower will read their tombstones too).
    pub fn forget(&self, ids: &[String]) {
        let mut s = self.lock();
        for id in ids {
            s.ring.apply(id, None, None).ok();
        }
    }

    /// Waits until the follower has read everything written to the key topic before now.
    pub fn sync(&self) -> anyhow::Result<()> {
        let sh = &self.shared;
        let markers = write_end_markers(&sh.kafka, &sh.bootstrap, &sh.topic, &sh.partitions)?;
        let deadline = Instant::now() + SYNC_LIMIT;
        let mut s = self.lock();
        loop {
            let behind = markers
                .iter()
                .any(|(p, o)| s.next.get(p).is_none_or(|n| n <= o));
            if !behind {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "the subject key follower did not reach the end of {} within {SYNC_LIMIT:?}",
                    sh.topic
                );
            }
            s = sh
                .changed
                .wait_timeout(s, left.min(Duration::from_millis(200)))
                .expect("subject keys lock")
                .0;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("subject keys lock")
    }
}

fn key_id(key: Option<&[u8]>) -> Option<&str> {
    let k = std::str::from_utf8(key?).ok()?;
    (k != END_MARKER).then_some(k)
}

fn follow(sh: &Shared) -> anyhow::Result<()> {
    let consumer = follower(&sh.kafka, &sh.bootstrap, "subject-keys", false)?;
    let mut tpl = TopicPartitionList::new();
    {
        let s = sh.state.lock().expect("subject keys lock");
        for p in &sh.partitions {
            let from = s
                .next
                .get(p)
                .map_or(Offset::Beginning, |o| Offset::Offset(*o));
            tpl.add_partition_offset(&sh.topic, *p, from)?;
        }
    }
    consumer
        .assign(&tpl)
        .with_context(|| format!("assigning {}", sh.topic))?;
    while !sh.stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let mut s = sh.state.lock().expect("subject keys lock");
                if let Some(id) = key_id(m.key()) {
                    if let Err(e) = s.ring.apply(id, m.payload(), sh.wrapping.as_ref()) {
                        tracing::error!(topic = %sh.topic, error = %e, "A subject key cannot be read; values sealed under it stay sealed.");
                    }
                }
                s.next.insert(m.partition(), m.offset() + 1);
                sh.changed.notify_all();
            }
            Some(Err(e)) => {
                tracing::warn!(topic = %sh.topic, error = %e, "Error while following the subject keys.")
            }
            None => {}
        }
    }
    Ok(())
}
