//! A topic followed from its beginning into a state of the role's own (a compacted map, most
//! often), on a thread of its own; [`Followed::sync`] waits until everything written to the
//! topic before the call has been folded in. The CRM inbound's contact owners and the
//! erased-subject list are read this way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::reading::{follower, partitions_of, write_end_markers, END_MARKER};
use crate::config::KafkaConfig;

/// How long a catch-up may take.
const SYNC_LIMIT: Duration = Duration::from_secs(60);

struct Inner<S> {
    state: S,
    /// The next offset to read, per partition.
    next: HashMap<i32, i64>,
}

struct Shared<S> {
    inner: Mutex<Inner<S>>,
    changed: Condvar,
    stop: AtomicBool,
    kafka: KafkaConfig,
    bootstrap: String,
    topic: String,
    partitions: Vec<i32>,
}

/// A followed topic's state. Cheap to clone; the thread stops with [`Followed::stop`], or
/// when the last handle is dropped (a role that ends, not only one told to stop).
pub struct Followed<S> {
    shared: Arc<Shared<S>>,
    _stopper: Arc<Stopper<S>>,
}

impl<S> Clone for Followed<S> {
    fn clone(&self) -> Self {
        Followed {
            shared: self.shared.clone(),
            _stopper: self._stopper.clone(),
        }
    }
}

/// Stops the follower's thread when dropped (the thread holds only [`Shared`]).
struct Stopper<S>(Arc<Shared<S>>);

impl<S> Drop for Stopper<S> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

impl<S: Send + 'static> Followed<S> {
    /// Follows `topic` from its beginning, folding every record (end markers left out) into
    /// `state` with `fold`; returns once it has read what was written before the call
    /// (blocking).
    pub fn start(
        kafka: &KafkaConfig,
        bootstrap: &str,
        topic: &str,
        purpose: &str,
        state: S,
        mut fold: impl FnMut(&mut S, &BorrowedMessage<'_>) + Send + 'static,
    ) -> anyhow::Result<Followed<S>> {
        let consumer = follower(kafka, bootstrap, purpose, false)?;
        let partitions = partitions_of(&consumer, topic)?;
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
        }
        consumer
            .assign(&tpl)
            .with_context(|| format!("assigning {topic}"))?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                state,
                next: HashMap::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            kafka: kafka.clone(),
            bootstrap: bootstrap.to_string(),
            topic: topic.to_string(),
            partitions,
        });
        let sh = shared.clone();
        std::thread::Builder::new()
            .name(purpose.chars().take(15).collect())
            .spawn(move || {
                while !sh.stop.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => {
                            let mut inner = sh.inner.lock().expect("followed state");
                            if m.key() != Some(END_MARKER.as_bytes()) {
                                fold(&mut inner.state, &m);
                            }
                            inner.next.insert(m.partition(), m.offset() + 1);
                            sh.changed.notify_all();
                        }
                        Some(Err(e)) => {
                            tracing::warn!(topic = %sh.topic, error = %e, "Error while following a topic.")
                        }
                        None => {}
                    }
                }
            })
            .with_context(|| format!("starting the follower of {topic}"))?;
        let followed = Followed {
            _stopper: Arc::new(Stopper(shared.clone())),
            shared,
        };
        followed.sync()?;
        Ok(followed)
    }

    /// [`Followed::start`] from async code.
    pub async fn start_async(
        kafka: &KafkaConfig,
        bootstrap: &str,
        topic: &str,
        purpose: &str,
        state: S,
        fold: impl FnMut(&mut S, &BorrowedMessage<'_>) + Send + 'static,
    ) -> anyhow::Result<Followed<S>> {
        let (kafka, bootstrap, topic, purpose) = (
            kafka.clone(),
            bootstrap.to_string(),
            topic.to_string(),
            purpose.to_string(),
        );
        tokio::task::spawn_blocking(move || {
            Followed::start(&kafka, &bootstrap, &topic, &purpose, state, fold)
        })
        .await
        .context("starting a topic follower")?
    }

    /// Waits until everything written to the topic before now has been folded in (blocking).
    pub fn sync(&self) -> anyhow::Result<()> {
        let sh = &self.shared;
        let markers = write_end_markers(&sh.kafka, &sh.bootstrap, &sh.topic, &sh.partitions)?;
        let deadline = Instant::now() + SYNC_LIMIT;
        let mut inner = sh.inner.lock().expect("followed state");
        loop {
            let behind = markers
                .iter()
                .any(|(p, o)| inner.next.get(p).is_none_or(|n| n <= o));
            if !behind {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "{} was not read to its end within {SYNC_LIMIT:?}",
                sh.topic
            );
            inner = sh
                .changed
                .wait_timeout(inner, left.min(Duration::from_millis(200)))
                .expect("followed state")
                .0;
        }
    }

    /// [`Followed::sync`] from async code.
    pub async fn sync_async(&self) -> anyhow::Result<()> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.sync())
            .await
            .context("catching up with a followed topic")?
    }

    /// Reads the state as folded so far.
    pub fn read<T>(&self, f: impl FnOnce(&S) -> T) -> T {
        f(&self.shared.inner.lock().expect("followed state").state)
    }

    /// Changes the state here at once (what this role itself wrote, before it reads it back).
    pub fn update(&self, f: impl FnOnce(&mut S)) {
        f(&mut self.shared.inner.lock().expect("followed state").state)
    }

    /// Stops following.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}
