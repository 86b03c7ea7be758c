//! What woostream's promises need of each topic it uses, checked at start-up: a topic created
//! by a platform team (`topics.create = false`) or left from an earlier install can break them
//! silently. A wrong cleanup policy stops the start (an orders topic compacted loses orders of
//! the same customer; a profile or key topic that is not compacted never forgets an erased
//! person); a replication factor or `min.insync.replicas` of 1, or a `max.message.bytes` below
//! the records woostream writes, is warned about.
//!
//! [`problems`] is the pure part; [`read`] asks the brokers (`super::ensure_topics` calls
//! both, after the metadata it reads anyway).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use crate::config::TopicsConfig;

/// What the brokers say of one topic.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Found {
    pub replicas: Option<usize>,
    /// Topic configuration entries (`cleanup.policy`, `min.insync.replicas`, …).
    pub settings: HashMap<String, String>,
}

/// What is wrong with the topics: refusals stop the start, warnings are logged.
#[derive(Debug, Default, PartialEq)]
pub struct Problems {
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
}

/// `min.insync.replicas` for a topic woostream creates with `replication_factor` replicas:
/// 2 from 3 replicas on (acks=all then survives one broker down and never acknowledges a
/// record only one broker has); what the broker defaults to below that.
pub fn min_insync_replicas(replication_factor: i32) -> Option<i32> {
    (replication_factor >= 3).then_some(2)
}

/// Compares each topic with what woostream needs of it.
pub fn problems(
    topics: &TopicsConfig,
    max_message_bytes: usize,
    found: &HashMap<String, Found>,
    warn_single_replica: bool,
) -> Problems {
    let mut out = Problems::default();
    for (key, t) in topics.all() {
        let Some(f) = found.get(&t.name) else {
            continue;
        };
        if let Some(policy) = f.settings.get("cleanup.policy") {
            let compacted = policy.split(',').any(|p| p.trim() == "compact");
            let wants_compaction = t.cleanup_policy.contains("compact");
            if compacted != wants_compaction {
                out.refusals.push(format!(
                    "topic {} (topics.{key}) has cleanup.policy={policy}, but woostream needs {}: {}",
                    t.name,
                    t.cleanup_policy,
                    if wants_compaction {
                        "without compaction it keeps every version of every key, and an erased person's records are never removed"
                    } else {
                        "with compaction, records of one key (one customer's orders) are lost"
                    }
                ));
            }
        }
        if let Some(max) = f
            .settings
            .get("max.message.bytes")
            .and_then(|m| m.parse::<usize>().ok())
        {
            if max < max_message_bytes {
                out.warnings.push(format!(
                    "topic {} has max.message.bytes={max}, below kafka.max_message_bytes={max_message_bytes}: larger records are refused by the broker (and dead-lettered)",
                    t.name
                ));
            }
        }
        if warn_single_replica {
            if f.replicas == Some(1) {
                out.warnings.push(format!(
                    "topic {} has 1 replica: losing that broker loses what it holds (acks=all is only as strong as the replicas)",
                    t.name
                ));
            } else if f.settings.get("min.insync.replicas").map(String::as_str) == Some("1") {
                out.warnings.push(format!(
                    "topic {} has min.insync.replicas=1: a record acknowledged by one broker alone is lost with it; set 2 (with 3 replicas)",
                    t.name
                ));
            }
        }
    }
    out
}

/// Adds the settings of each topic (`replicas`: name → replica count, from the metadata
/// already read) as the brokers describe them. A broker that cannot describe configurations
/// (some Kafka-compatible brokers) yields the replica counts alone.
pub async fn read(
    admin: &AdminClient<DefaultClientContext>,
    replicas: impl IntoIterator<Item = (String, usize)>,
) -> HashMap<String, Found> {
    let mut found: HashMap<String, Found> = replicas
        .into_iter()
        .map(|(name, replicas)| {
            let found = Found {
                replicas: Some(replicas),
                settings: HashMap::new(),
            };
            (name, found)
        })
        .collect();
    let specifiers: Vec<ResourceSpecifier> =
        found.keys().map(|n| ResourceSpecifier::Topic(n)).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    match admin.describe_configs(&specifiers, &options).await {
        Ok(results) => {
            for resource in results.into_iter().flatten() {
                let rdkafka::admin::OwnedResourceSpecifier::Topic(name) = &resource.specifier
                else {
                    continue;
                };
                let settings = resource
                    .entries
                    .iter()
                    .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
                    .collect();
                if let Some(f) = found.get_mut(name) {
                    f.settings = settings;
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "The brokers do not describe topic settings; they are not checked.")
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(replicas: usize, settings: &[(&str, &str)]) -> Found {
        Found {
            replicas: Some(replicas),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_wrong_cleanup_policy_is_refused_and_weak_durability_warned_about() {
        let topics = TopicsConfig::default();
        let mut all = HashMap::new();
        all.insert(
            topics.orders.name.clone(),
            found(
                3,
                &[("cleanup.policy", "compact"), ("min.insync.replicas", "2")],
            ),
        );
        all.insert(
            topics.profiles.name.clone(),
            found(
                3,
                &[("cleanup.policy", "delete"), ("min.insync.replicas", "1")],
            ),
        );
        all.insert(
            topics.subject_keys.name.clone(),
            found(
                1,
                &[
                    ("cleanup.policy", "compact"),
                    ("max.message.bytes", "1048588"),
                ],
            ),
        );
        all.insert(
            topics.alerts.name.clone(),
            found(
                3,
                &[("cleanup.policy", "delete"), ("min.insync.replicas", "2")],
            ),
        );
        let p = problems(&topics, 5 * 1024 * 1024, &all, true);
        assert_eq!(p.refusals.len(), 2, "{p:?}");
        assert!(p.refusals[0].contains("woo.orders") && p.refusals[0].contains("are lost"));
        assert!(
            p.refusals[1].contains("customer-profiles") && p.refusals[1].contains("never removed")
        );
        assert_eq!(p.warnings.len(), 3, "{p:?}");
        assert!(p
            .warnings
            .iter()
            .any(|w| w.contains("customer-profiles") && w.contains("min.insync.replicas=1")));
        assert!(p
            .warnings
            .iter()
            .any(|w| w.contains("subject-keys") && w.contains("1 replica")));
        assert!(p
            .warnings
            .iter()
            .any(|w| w.contains("subject-keys") && w.contains("max.message.bytes")));
        // A development broker with one replica, told so: no durability warnings.
        let dev = problems(&topics, 5 * 1024 * 1024, &all, false);
        assert_eq!(dev.warnings.len(), 1);
        assert_eq!(min_insync_replicas(3), Some(2));
        assert_eq!(min_insync_replicas(1), None);
    }
}
