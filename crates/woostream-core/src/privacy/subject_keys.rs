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
use chrono::{DateTime, Utc};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::keyring::{KeyRecord, Keyring, SubjectKey};
use super::personal::{key_ids, open_fields, Field, Sealing};
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
    /// `privacy.bind_sealed_values`: how new keys are made and what is sealed with any key.
    bind: bool,
    kafka: KafkaConfig,
    bootstrap: String,
    topic: String,
    partitions: Vec<i32>,
    stop: AtomicBool,
}

/// Why sealed fields could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The key topic cannot be read: nothing sealed can be, so a role stops (and resumes from
    /// here) rather than skip or dead-letter what it could not open.
    #[error("the subject keys are unavailable: {0:#}")]
    KeysUnavailable(anyhow::Error),
    /// A value is damaged or forged: that record alone is unreadable.
    #[error("a sealed field cannot be opened: {0}")]
    Damaged(String),
}

/// What is unsafe about how the keys are kept: unwrapped keys (whoever reads the key topic
/// opens every sealed value) and a key topic on fewer than 3 replicas (losing it shreds every
/// customer at once).
pub fn key_safety(wrapped: bool, replicas: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    if !wrapped {
        out.push("The subject keys are not wrapped: whoever can read the key topic can open every sealed value. Set privacy.key_wrapping_key (a secret kept outside Kafka).".to_string());
    }
    if let Some(n) = replicas.filter(|n| *n < 3) {
        out.push(format!("The key topic has {n} replica(s): losing it makes every sealed value unreadable, as if every customer were erased. Give it a replication factor of 3 or more."));
    }
    out
}

/// The replication factor of `topic`'s first partition, as the broker reports it.
fn replication_of(consumer: &crate::kafka::reading::Reader, topic: &str) -> Option<usize> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()?;
    let n = md.topics().first()?.partitions().first()?.replicas().len();
    Some(n)
}

/// A recent record's key is not in the key topic yet: read the record again later.
#[derive(Debug, thiserror::Error)]
#[error(
    "subject key {0} is not in the key topic yet (the record overtook it); reading it again later"
)]
pub struct NotYet(pub String);

/// How recent a record must be for an absent key to be "not yet" rather than deleted: far
/// longer than any drain of a producer's spool, far shorter than a tombstone is kept.
pub fn not_yet_window() -> chrono::Duration {
    chrono::Duration::minutes(15)
}

/// How many key followers of this process are still running (each stops shortly after its
/// last handle goes): what a process that owns its brokers waits for before stopping them.
static FOLLOWERS: (std::sync::Mutex<usize>, Condvar) = (std::sync::Mutex::new(0), Condvar::new());

/// Counts a follower thread from its start to its end.
struct FollowerRunning;

impl FollowerRunning {
    fn new() -> FollowerRunning {
        *FOLLOWERS.0.lock().expect("followers lock") += 1;
        FollowerRunning
    }
}

impl Drop for FollowerRunning {
    fn drop(&mut self) {
        *FOLLOWERS.0.lock().expect("followers lock") -= 1;
        FOLLOWERS.1.notify_all();
    }
}

/// Waits (blocking, at most `timeout`) until every key follower whose handles are gone has
/// stopped; false if some still run. `woostream run` calls it before it stops the embedded
/// Kafka, so that no follower is left polling brokers that are gone.
pub fn wait_for_followers(timeout: std::time::Duration) -> bool {
    let guard = FOLLOWERS.0.lock().expect("followers lock");
    let (guard, _) = FOLLOWERS
        .1
        .wait_timeout_while(guard, timeout, |n| *n > 0)
        .expect("followers lock");
    *guard == 0
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
        Some(k) if crate::privacy::cipher::key_is_valid(&k) => {
            Ok(Some(crate::privacy::cipher::cipher(&k)))
        }
        Some(_) => bail!(
            "privacy.key_wrapping_key: {}",
            crate::privacy::cipher::KEY_EXPECTED
        ),
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
        let bind = config.privacy.bind_sealed_values;
        let mut ring = if by_subject {
            Keyring::by_subject()
        } else {
            Keyring::default()
        }
        .binding(bind);
        let consumer = reader(&config.kafka, bootstrap, "subject-keys")?;
        let partitions = partitions_of(&consumer, &topic)?;
        // Once per process: several roles in one process each read the keys.
        static SAID: std::sync::Once = std::sync::Once::new();
        let warnings = key_safety(wrapping.is_some(), replication_of(&consumer, &topic));
        SAID.call_once(|| {
            for warning in warnings {
                tracing::warn!(topic = %topic, "{warning}");
            }
        });
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
            bind,
            kafka: config.kafka.clone(),
            bootstrap: bootstrap.to_string(),
            topic,
            partitions,
            stop: AtomicBool::new(false),
        });
        let thread_shared = shared.clone();
        let running = FollowerRunning::new();
        std::thread::Builder::new()
            .name("subject-keys".into())
            .spawn(move || {
                let _running = running;
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

    /// The keys with these ids (`None`: deleted). Ids not read yet wait, all together, for
    /// the follower to reach the topic's current end; one still absent then was deleted (its
    /// tombstone compacted away) and is remembered as such.
    pub fn keys(&self, ids: &[String]) -> anyhow::Result<HashMap<String, Option<Arc<SubjectKey>>>> {
        self.keys_for_record(ids, None)
    }

    /// [`SubjectKeys::keys`] for a record written at `written_at`: when it is recent, a key
    /// still absent at the topic's end is not yet there (the record overtook it, e.g. while
    /// a producer's spool drains) rather than deleted — [`NotYet`], to be read again later.
    /// An old record's absent key was deleted and compacted away.
    pub fn keys_for_record(
        &self,
        ids: &[String],
        written_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<HashMap<String, Option<Arc<SubjectKey>>>> {
        let known = |s: &State, id: &str| match s.ring.get(id) {
            Some(k) => Some(Some(k)),
            None if s.ring.is_deleted(id) => Some(None),
            None => None,
        };
        let unknown = {
            let s = self.lock();
            ids.iter().any(|id| known(&s, id).is_none())
        };
        if unknown {
            self.sync()?;
        }
        let recent = written_at.is_some_and(|at| Utc::now() - at < not_yet_window());
        let mut s = self.lock();
        if recent {
            if let Some(id) = ids.iter().find(|id| known(&s, id).is_none()) {
                return Err(NotYet(id.clone()).into());
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                let key = known(&s, id).unwrap_or_else(|| {
                    s.ring.apply(id, None, None).ok();
                    None
                });
                (id.clone(), key)
            })
            .collect())
    }

    /// One key: see [`SubjectKeys::keys`].
    pub fn key(&self, id: &str) -> anyhow::Result<Option<Arc<SubjectKey>>> {
        Ok(self.keys(&[id.to_string()])?.remove(id).flatten())
    }

    /// [`SubjectKeys::keys`] from async code: on a blocking thread only when it has to wait.
    pub async fn resolve(
        &self,
        ids: Vec<String>,
        written_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<HashMap<String, Option<Arc<SubjectKey>>>> {
        let all_read = {
            let s = self.lock();
            ids.iter()
                .all(|id| s.ring.get(id).is_some() || s.ring.is_deleted(id))
        };
        if all_read {
            return self.keys_for_record(&ids, written_at);
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.keys_for_record(&ids, written_at))
            .await
            .context("looking up subject keys")?
    }

    /// Opens sealed fields in place (blocking: see [`SubjectKeys::keys`]).
    pub fn open(&self, fields: Vec<Field<'_>>) -> Result<Sealing, OpenError> {
        self.open_record(fields, None)
    }

    /// [`SubjectKeys::open`] for a record written at `written_at` (see
    /// [`SubjectKeys::keys_for_record`]): a recent record's key not there yet is
    /// `KeysUnavailable`, read again later, never taken for an erasure.
    pub fn open_record(
        &self,
        fields: Vec<Field<'_>>,
        written_at: Option<DateTime<Utc>>,
    ) -> Result<Sealing, OpenError> {
        let ids = key_ids(&fields);
        if ids.is_empty() {
            return Ok(Sealing::Clear);
        }
        let found = self
            .keys_for_record(&ids, written_at)
            .map_err(OpenError::KeysUnavailable)?;
        open_fields(fields, |id| found.get(id).cloned().flatten()).map_err(OpenError::Damaged)
    }

    /// [`SubjectKeys::open`] from async code.
    pub async fn open_async(&self, fields: Vec<Field<'_>>) -> Result<Sealing, OpenError> {
        self.open_record_async(fields, None).await
    }

    /// [`SubjectKeys::open_record`] from async code.
    pub async fn open_record_async(
        &self,
        fields: Vec<Field<'_>>,
        written_at: Option<DateTime<Utc>>,
    ) -> Result<Sealing, OpenError> {
        let ids = key_ids(&fields);
        if ids.is_empty() {
            return Ok(Sealing::Clear);
        }
        let found = self
            .resolve(ids, written_at)
            .await
            .map_err(OpenError::KeysUnavailable)?;
        open_fields(fields, |id| found.get(id).cloned().flatten()).map_err(OpenError::Damaged)
    }

    /// The key with this id if this role has read it (no waiting).
    pub fn cached(&self, id: &str) -> Option<Arc<SubjectKey>> {
        self.lock().ring.get(id)
    }

    /// The key new values of `subject` are sealed with, if this role has one.
    pub fn current(&self, subject: &str) -> Option<Arc<SubjectKey>> {
        self.lock().ring.current(subject)
    }

    /// Every key id of these people, as of the topic's current end.
    pub fn ids_of(&self, subjects: &[String]) -> anyhow::Result<Vec<String>> {
        self.sync()?;
        let s = self.lock();
        Ok(subjects.iter().flat_map(|x| s.ring.ids_of(x)).collect())
    }

    /// A new key for `subject` and its record (the record key, then the value), to be made
    /// durable before anything is sealed with it; [`SubjectKeys::insert`] then makes it the
    /// subject's current key.
    pub fn new_key(&self, subject: &str) -> (Arc<SubjectKey>, Vec<u8>, Vec<u8>) {
        let key = Arc::new(SubjectKey::generate(self.shared.bind));
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

#[cfg(test)]
mod safety_tests {
    use super::*;

    #[test]
    fn unwrapped_keys_and_a_key_topic_under_three_replicas_are_called_out() {
        assert!(key_safety(true, Some(3)).is_empty());
        let w = key_safety(false, Some(1));
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("privacy.key_wrapping_key"));
        assert!(w[1].contains("1 replica"));
        assert_eq!(key_safety(true, None).len(), 0, "unknown: nothing said");
    }
}
