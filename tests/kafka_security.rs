//! woostream on a Kafka that speaks only TLS, as managed Kafka does (Tansu behind stunnel, with
//! a CA and certificates made here): every role over mutual TLS with zstd compression; the
//! producer over SASL_SSL with SCRAM-SHA-512 and its password read from a file; and each
//! misconfiguration a platform team makes — a wrong password, a wrong CA, no client
//! certificate, TLS settings left out — stopping the role at start with the setting to fix.

use std::time::{Duration, Instant};

use woostream_core::config::Config;
use woostream_tests::enricher::{free_port, spawn, EnricherProcess};
use woostream_tests::roles::every_role_carries_a_webhook_to_slack_and_the_crm;
use woostream_tests::secure::{ClientAuth, SecureBroker};
use woostream_tests::{fixture, read_topic_now, Post, SECRET, SOURCE};

const SCRAM_USER: &str = "woostream-shop";
const SCRAM_PASSWORD: &str = "scram-password-of-the-shop";

fn producer_toml(kafka: &str, webhook_port: u16, ops_port: u16) -> String {
    format!(
        "[producer]\nlisten = \"127.0.0.1:{webhook_port}\"\n\n{kafka}\n\n[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"{SECRET}\"\n\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"\n"
    )
}

/// Starts the producer with `kafka` and waits until it has exited; returns its log.
fn producer_refused(broker: &SecureBroker, kafka: &str, name: &str) -> String {
    let port = free_port();
    let mut process = spawn(
        "producer",
        &producer_toml(kafka, free_port(), port),
        name,
        port,
        broker.dir.path(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = process.exited() {
            break status;
        }
        assert!(
            !process.is_ready(),
            "{name}: the producer answered ready: {}",
            process.log_text()
        );
        assert!(
            Instant::now() < deadline,
            "{name}: the producer kept running: {}",
            process.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{name}: exit status {status}");
    process.log_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_over_mutual_tls_with_zstd_carries_a_webhook_to_slack_and_the_crm() {
    let broker = tokio::task::spawn_blocking(|| SecureBroker::start(ClientAuth::Certificate))
        .await
        .unwrap();
    let kafka = broker.kafka_toml("compression = \"zstd\"", &broker.client_certificate_toml());
    every_role_carries_a_webhook_to_slack_and_the_crm(&kafka).await;

    // The same broker refuses a client that has no certificate to show.
    let without_certificate = broker.kafka_toml("", "protocol = \"SSL\"");
    let log = tokio::task::spawn_blocking(move || {
        producer_refused(&broker, &without_certificate, "no-client-certificate")
    })
    .await
    .unwrap();
    assert!(
        log.contains("cannot connect to Kafka") && log.contains("kafka.security.cert_file"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_over_sasl_ssl_with_scram_delivers_and_every_misconfiguration_stops_it_at_start(
) {
    let broker = tokio::task::spawn_blocking(|| {
        SecureBroker::start(ClientAuth::Scram {
            user: SCRAM_USER.into(),
            password: SCRAM_PASSWORD.into(),
        })
    })
    .await
    .unwrap();
    let password_file = broker.dir.path().join("kafka-password");
    std::fs::write(&password_file, format!("{SCRAM_PASSWORD}\n")).unwrap();
    let scram = |password: &str| {
        format!(
            "protocol = \"SASL_SSL\"\nmechanism = \"SCRAM-SHA-512\"\nusername = \"{SCRAM_USER}\"\npassword = {password}\n"
        )
    };
    let kafka = broker.kafka_toml(
        "",
        &scram(&format!("{{ file = \"{}\" }}", password_file.display())),
    );

    let (webhook_port, ops_port) = (free_port(), free_port());
    let toml = producer_toml(&kafka, webhook_port, ops_port);
    let mut producer: EnricherProcess =
        spawn("producer", &toml, "scram", ops_port, broker.dir.path());
    producer.ready(Duration::from_secs(120)).await;
    let mut order: serde_json::Value =
        serde_json::from_slice(&fixture("woo_order_example.json")).unwrap();
    order["id"] = 770_001.into();
    let body = serde_json::to_vec(&order).unwrap();
    let (status, answer) = Post::signed("order.created", &body)
        .send(&format!(
            "http://127.0.0.1:{webhook_port}/webhooks/woocommerce"
        ))
        .await;
    assert_eq!(status, 200, "acknowledged by the broker: {answer}");

    // Read back over the same SASL_SSL connection, with the settings the producer used.
    let config_path = broker.dir.path().join("reader.toml");
    std::fs::write(&config_path, &toml).unwrap();
    let config = Config::load(&config_path).expect("the configuration loads");
    let orders = read_topic_now(&config, "scram-reader", &config.topics.orders.name).await;
    assert_eq!(
        orders.len(),
        1,
        "one order in {}",
        config.topics.orders.name
    );
    assert_eq!(producer.stop().code(), Some(0), "{}", producer.log_text());

    let refusals = [
        (
            "wrong-password",
            broker.kafka_toml("", &scram("\"not-the-password\"")),
            "kafka.security.password",
        ),
        (
            "wrong-ca",
            broker
                .kafka_toml("", &scram("\"x\""))
                .replace(
                    &broker.pki.ca.display().to_string(),
                    &broker.pki.other_ca.display().to_string(),
                )
                .replace("\"x\"", &format!("\"{SCRAM_PASSWORD}\"")),
            "kafka.security.ca_file",
        ),
        (
            "tls-left-out",
            broker.kafka_toml(
                "",
                &scram(&format!("\"{SCRAM_PASSWORD}\"")).replace("SASL_SSL", "SASL_PLAINTEXT"),
            ),
            "kafka.security.protocol",
        ),
    ];
    tokio::task::spawn_blocking(move || {
        for (name, kafka, setting) in refusals {
            let log = producer_refused(&broker, &kafka, name);
            assert!(
                log.contains("cannot connect to Kafka") && log.contains(setting),
                "{name}: {log}"
            );
            assert!(
                !log.contains(SCRAM_PASSWORD),
                "{name}: the password appears in the log"
            );
        }
    })
    .await
    .unwrap();
}
