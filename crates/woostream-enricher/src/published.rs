//! What a consumer of the profile and alert topics holds after dropping what it already
//! applied: each customer's newest profile version, and each alert id once. The sinks and the
//! tests read the topics through this, which is the second layer of exactly-once effect.

use std::collections::{BTreeMap, HashMap, HashSet};

use woostream_core::contract::enriched::{Alert, AlertKind, CustomerProfile, Segment};

/// Customer keys starting with this are the enricher's restore markers, not customers.
pub const MARKER_PREFIX: &str = "restore-marker:";

#[derive(Debug, Default, Clone)]
pub struct View {
    pub profiles: HashMap<(String, String), CustomerProfile>,
    pub alerts: Vec<Alert>,
    alert_ids: HashSet<String>,
    erased: HashSet<(String, String)>,
    /// Records dropped because they were already applied.
    pub repeated_profiles: u64,
    pub repeated_alerts: u64,
}

impl View {
    /// Applies a profile version, or a tombstone (`None`); false when it was already applied.
    pub fn apply_profile(
        &mut self,
        shop_id: &str,
        customer: &str,
        profile: Option<CustomerProfile>,
    ) -> bool {
        if customer.starts_with(MARKER_PREFIX) {
            return false;
        }
        let key = (shop_id.to_string(), customer.to_string());
        let Some(profile) = profile else {
            self.profiles.remove(&key);
            return self.erased.insert(key);
        };
        match self.profiles.get(&key) {
            Some(current) if current.version >= profile.version => {
                self.repeated_profiles += 1;
                false
            }
            _ => {
                self.profiles.insert(key, profile);
                true
            }
        }
    }

    /// Applies an alert; false when its id was already seen.
    pub fn apply_alert(&mut self, alert: Alert) -> bool {
        if !self.alert_ids.insert(alert.alert_id.clone()) {
            self.repeated_alerts += 1;
            return false;
        }
        self.alerts.push(alert);
        true
    }

    pub fn segments(&self) -> BTreeMap<Segment, usize> {
        let mut out = BTreeMap::new();
        for p in self.profiles.values().filter(|p| p.orders_count > 0) {
            *out.entry(p.segment).or_default() += 1;
        }
        out
    }

    pub fn alert_kinds(&self) -> BTreeMap<AlertKind, usize> {
        let mut out = BTreeMap::new();
        for a in &self.alerts {
            *out.entry(a.kind).or_default() += 1;
        }
        out
    }
}

/// Follows the profile and alert topics from the beginning into a shared [`View`], on a
/// thread of its own, until `shutdown`.
pub fn follow(
    config: &woostream_core::config::Config,
    bootstrap: &str,
    decoder: woostream_core::contract::codec::Decoder,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(
    std::sync::Arc<std::sync::Mutex<View>>,
    std::thread::JoinHandle<()>,
)> {
    use anyhow::Context;
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Message;
    use woostream_core::contract::events::CustomerKey;

    let consumer =
        woostream_core::kafka::reading::follower(&config.kafka, bootstrap, "enricher-view", false)?;
    let (profiles, alerts) = (
        config.topics.profiles.name.clone(),
        config.topics.alerts.name.clone(),
    );
    let mut tpl = rdkafka::TopicPartitionList::new();
    for topic in [&profiles, &alerts] {
        for p in woostream_core::kafka::reading::partitions_of(&consumer, topic)? {
            tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
        }
    }
    consumer
        .assign(&tpl)
        .context("assigning the profile and alert topics")?;
    let view = std::sync::Arc::new(std::sync::Mutex::new(View::default()));
    let shared = view.clone();
    let thread = std::thread::Builder::new()
        .name("insights-view".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                let Some(Ok(m)) = consumer.poll(std::time::Duration::from_millis(100)) else {
                    continue;
                };
                let mut v = shared.lock().expect("view lock");
                if m.topic() == profiles {
                    let Some(Ok(key)) = m.key().map(|k| decoder.decode::<CustomerKey>(k)) else {
                        continue;
                    };
                    let profile = m
                        .payload()
                        .and_then(|p| decoder.decode::<CustomerProfile>(p).ok());
                    v.apply_profile(&key.shop_id, &key.customer, profile);
                } else if let Some(Ok(alert)) = m.payload().map(|p| decoder.decode::<Alert>(p)) {
                    v.apply_alert(alert);
                }
            }
        })
        .context("spawning the insights view")?;
    Ok((view, thread))
}
