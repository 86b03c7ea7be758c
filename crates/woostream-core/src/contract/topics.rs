//! Pure: what every topic holds, declared once — its key and value contracts and what it is
//! for. The topics reference (docs/reference/topics.md) is printed from it, and the tests hold
//! it to the configuration (every topic has one entry) and to `schemas/` (every Avro contract
//! named exists, every schema file is some topic's).

use std::fmt::Write as _;

use crate::config::{DataKind, TopicsConfig};

/// How a topic's keys or values are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// An Avro contract: the file name in `schemas/` without `.avsc`.
    Avro(&'static str),
    /// Plain UTF-8 text, as described.
    Text(&'static str),
    /// A JSON document, as described (woostream's internal state, not a contract others read).
    Json(&'static str),
    /// No value is ever read.
    Empty,
}

/// One topic: the configuration key it is named by (`topics.<key>.name`) and what it holds.
#[derive(Clone, Copy, Debug)]
pub struct TopicContract {
    pub topic: &'static str,
    pub key: Payload,
    pub value: Payload,
    pub about: &'static str,
}

const fn avro(key: &'static str, value: &'static str) -> (Payload, Payload) {
    (Payload::Avro(key), Payload::Avro(value))
}

const fn contract(
    topic: &'static str,
    kv: (Payload, Payload),
    about: &'static str,
) -> TopicContract {
    TopicContract {
        topic,
        key: kv.0,
        value: kv.1,
        about,
    }
}

/// Every topic woostream reads or writes, in the order of the pipeline.
pub const TOPIC_CONTRACTS: [TopicContract; 20] = [
    contract(
        "orders",
        avro("customer-key", "order-event"),
        "Orders, keyed by the customer (the WooCommerce id, or `guest:<hash>` of the billing email), so one customer's history is in one partition.",
    ),
    contract(
        "products",
        avro("product-key", "product-event"),
        "Products; every producer replica follows it to fill the orders' category ids.",
    ),
    contract("customers", avro("customer-key", "customer-event"), "Customer accounts."),
    contract("coupons", avro("coupon-key", "coupon-event"), "Coupons."),
    contract("reviews", avro("product-key", "review-event"), "Product reviews, keyed by product."),
    contract(
        "actions",
        avro("action-key", "action-event"),
        "WooCommerce's `action.*` webhooks.",
    ),
    contract(
        "ingest_dead_letter",
        avro("dead-letter-key", "ingest-dead-letter"),
        "Signed deliveries that are not readable events, with their raw bytes (sealed) and the reason; keyed by the correlation id.",
    ),
    contract(
        "profiles",
        avro("customer-key", "customer-profile"),
        "Customer profiles (CLV, RFM segment, churn risk, taste), each with its `version`; also the enricher's changelog.",
    ),
    contract(
        "alerts",
        avro("alert-key", "alert"),
        "The enricher's alerts, with a deterministic `alert_id`: what the Slack sink routes.",
    ),
    contract(
        "models",
        avro("dead-letter-key", "shop-model"),
        "Each shop's fitted model (BG/NBD, Gamma-Gamma, RFM boundaries), keyed by the shop.",
    ),
    contract(
        "deliveries",
        (
            Payload::Text("`slack:<channel>:<alert_id>`, `crm:<object>:<id>:<version>`, `shop:customers:<change>`, `erasure:<id>:<role>`"),
            Payload::Avro("delivery"),
        ),
        "The audit of every sink outcome, and the erasure receipts; the sinks restore what they delivered from it.",
    ),
    contract(
        "slack_dead_letter",
        (Payload::Text("the delivery id"), Payload::Avro("alert")),
        "Alerts Slack refused for good, as received; the reason and the channel in headers.",
    ),
    contract(
        "crm_dead_letter",
        (
            Payload::Text("`contact:<shop>:<customer>:<version>`, `deal:<shop>:<order>:<version>`"),
            Payload::Avro("crm-dead-letter"),
        ),
        "What the CRM refused for good: the reason, the HTTP status, the attempts, the source offsets and the original change; `woostream replay` re-drives it.",
    ),
    contract(
        "transactions_probe",
        (Payload::Text("`transactions-probe`"), Payload::Empty),
        "The enricher's start-up probe of the broker's transactions; nothing reads it.",
    ),
    contract(
        "checkpoints",
        (
            Payload::Text("`backfill/<shop>/<resource>`, `reconcile/<shop>/<resource>`"),
            Payload::Json("a backfill's last finished page, reconciliation's watermark"),
        ),
        "Where the REST side keeps its place.",
    ),
    contract(
        "subject_keys",
        (Payload::Text("the key id"), Payload::Json("a person's key, itself sealed when `privacy.key_wrapping_key` is set")),
        "The per-person keys personal fields are sealed with; an erasure deletes them.",
    ),
    contract(
        "crm_changes",
        (Payload::Text("`<shop>:<customer id>`"), Payload::Json("a contact property change from the CRM, its value sealed")),
        "The CRM talking back, on its way to the shop.",
    ),
    contract(
        "shop_dead_letter",
        (Payload::Text("`<shop>:<customer id>`"), Payload::Json("a CRM change the shop refused, with WooCommerce's reason (value still sealed)")),
        "CRM changes the shop refused for good.",
    ),
    contract(
        "backtests",
        avro("dead-letter-key", "backtest"),
        "Each shop's latest backtest (`woostream backtest`), keyed by the shop: what the insight page shows.",
    ),
    contract(
        "erased_subjects",
        (Payload::Text("a pseudonymous subject reference"), Payload::Json("the erasure's id and time")),
        "Who was erased: no new key and no new CRM contact for an erased person's past.",
    ),
];

/// What one role (or a command that writes) reads and writes, by topic configuration key: the
/// "read by" and "written by" columns of the topics reference.
#[derive(Clone, Copy, Debug)]
pub struct RoleTopics {
    pub role: &'static str,
    pub reads: &'static [&'static str],
    pub writes: &'static [&'static str],
}

/// Every role's topics. Where a role's personal data is sealed it also follows the key topic
/// (`subject_keys`); an erasure (`woostream erase`, or the producer on `customer.deleted`)
/// writes the customers' tombstones, the erased-subject list and its receipt.
pub const ROLE_TOPICS: [RoleTopics; 8] = [
    RoleTopics {
        role: "producer",
        reads: &["products", "subject_keys", "erased_subjects"],
        writes: &[
            "orders",
            "products",
            "customers",
            "coupons",
            "reviews",
            "actions",
            "ingest_dead_letter",
            "subject_keys",
            "erased_subjects",
            "deliveries",
        ],
    },
    RoleTopics {
        role: "backfill, reconcile",
        reads: &["checkpoints", "products", "subject_keys", "erased_subjects"],
        writes: &[
            "orders",
            "products",
            "customers",
            "coupons",
            "reviews",
            "ingest_dead_letter",
            "checkpoints",
            "alerts",
            "subject_keys",
            "erased_subjects",
            "deliveries",
        ],
    },
    RoleTopics {
        role: "crm inbound",
        reads: &["deliveries", "crm_changes"],
        writes: &["crm_changes", "shop_dead_letter"],
    },
    RoleTopics {
        role: "enricher",
        reads: &[
            "orders",
            "products",
            "customers",
            "reviews",
            "profiles",
            "models",
        ],
        writes: &[
            "profiles",
            "alerts",
            "models",
            "deliveries",
            "transactions_probe",
        ],
    },
    RoleTopics {
        role: "fit, backtest",
        reads: &["profiles"],
        writes: &["models", "backtests"],
    },
    RoleTopics {
        role: "slack",
        reads: &["alerts", "deliveries", "subject_keys"],
        writes: &["deliveries", "slack_dead_letter"],
    },
    RoleTopics {
        role: "crm",
        reads: &[
            "orders",
            "customers",
            "profiles",
            "deliveries",
            "subject_keys",
            "erased_subjects",
        ],
        writes: &["deliveries", "crm_dead_letter"],
    },
    RoleTopics {
        role: "insight",
        reads: &["profiles", "alerts", "models", "backtests", "deliveries"],
        writes: &[],
    },
];

/// The roles that read (`reading`) or write `topic`, joined for the reference.
fn roles_of(topic: &str, reading: bool) -> String {
    let roles: Vec<String> = ROLE_TOPICS
        .iter()
        .filter(|r| if reading { r.reads } else { r.writes }.contains(&topic))
        .map(|r| r.role.to_string())
        .collect();
    if roles.is_empty() {
        "—".into()
    } else {
        roles.join("; ")
    }
}

impl Payload {
    fn markdown(self) -> String {
        match self {
            Payload::Avro(name) => format!("Avro `{name}`"),
            Payload::Text(what) => format!("text: {what}"),
            Payload::Json(what) => format!("JSON: {what}"),
            Payload::Empty => "empty".into(),
        }
    }
}

fn kind_name(kind: DataKind) -> &'static str {
    match kind {
        DataKind::Events => "events",
        DataKind::Person => "person (until erased)",
        DataKind::Alerts => "alerts",
        DataKind::Audit => "audit",
        DataKind::DeadLetters => "dead letters",
        DataKind::State => "state",
    }
}

/// The topics reference as Markdown, with the default names and creation settings.
pub fn markdown() -> String {
    let topics = TopicsConfig::default();
    let mut out = String::from(
        "<!-- Generated by `woostream config topics` (make docs); do not edit by hand. -->\n\
         # Topics\n\n\
         Every topic woostream reads or writes, by its configuration key (`[topics.<key>]` renames \
         it; `kafka.namespace` prefixes every name). Avro contracts are the files in `schemas/`; \
         without a schema registry they are written in Avro single-object encoding, with one in its \
         framing (subjects `{topic}-key` and `{topic}-value`). Retention follows \
         the kind of data (`[retention]`), unless the topic sets `retention_ms`.\n\n\
         | key | default name | key | value | written by | read by | cleanup | partitions | retention | what it holds |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in TOPIC_CONTRACTS {
        let (_, t) = topics
            .all()
            .into_iter()
            .find(|(k, _)| *k == c.topic)
            .expect("every contract is a configured topic");
        let partitions = match t.partitions {
            Some(n) => n.to_string(),
            None => "`topics.partitions`".into(),
        };
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.topic,
            t.name,
            c.key.markdown(),
            c.value.markdown(),
            roles_of(c.topic, false),
            roles_of(c.topic, true),
            t.cleanup_policy,
            partitions,
            kind_name(topics.kind_of(c.topic)),
            c.about
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_topic_has_exactly_one_contract() {
        let topics = TopicsConfig::default();
        for (key, _) in topics.all() {
            let n = TOPIC_CONTRACTS.iter().filter(|c| c.topic == key).count();
            assert_eq!(n, 1, "topics.{key} has {n} contracts");
        }
        assert_eq!(TOPIC_CONTRACTS.len(), topics.all().len());
    }

    #[test]
    fn every_topic_a_role_names_exists_and_every_topic_is_written() {
        let keys: Vec<&str> = TOPIC_CONTRACTS.iter().map(|c| c.topic).collect();
        for r in ROLE_TOPICS {
            for t in r.reads.iter().chain(r.writes) {
                assert!(keys.contains(t), "{} names the unknown topic {t}", r.role);
            }
        }
        for c in TOPIC_CONTRACTS {
            assert_ne!(
                roles_of(c.topic, false),
                "—",
                "nothing writes topics.{}",
                c.topic
            );
        }
    }

    #[test]
    fn every_avro_contract_is_a_schema_file_and_every_schema_file_is_used() {
        let files: Vec<&str> = crate::contract::codec::SCHEMA_FILES
            .iter()
            .map(|(n, _)| *n)
            .collect();
        let mut used = Vec::new();
        for c in TOPIC_CONTRACTS {
            for p in [c.key, c.value] {
                if let Payload::Avro(name) = p {
                    assert!(
                        files.contains(&name),
                        "topics.{}: schemas/{name}.avsc",
                        c.topic
                    );
                    used.push(name);
                }
            }
        }
        for f in files {
            assert!(used.contains(&f), "schemas/{f}.avsc is no topic's contract");
        }
    }
}
