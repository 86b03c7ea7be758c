//! The first contact with the brokers, made by every role before anything else: a wrong CA, a
//! client certificate the broker refuses, wrong SASL credentials or TLS spoken to a plaintext
//! listener must stop the role at start with what to fix, not show up minutes later as
//! timeouts and an endless reconnect loop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::KafkaConfig;

/// The errors librdkafka reported while connecting, the latest last (a few: a refusal is
/// followed by "brokers are down", which must not hide it).
#[derive(Clone, Default)]
struct LastError(Arc<Mutex<Vec<Reported>>>);

/// One error librdkafka reported: its code when it came as an error event, and its text.
pub type Reported = (Option<RDKafkaErrorCode>, String);

impl LastError {
    fn remember(&self, code: Option<RDKafkaErrorCode>, reason: &str) {
        if let Ok(mut seen) = self.0.lock() {
            if seen.len() == 16 {
                seen.remove(0);
            }
            seen.push((code, reason.to_string()));
        }
    }

    /// The refusal among what was seen, with what to fix; and the latest error.
    fn verdict(&self, given_up: bool) -> (Option<(String, String)>, Option<String>) {
        let seen = self.0.lock().map(|s| s.clone()).unwrap_or_default();
        (
            refusal_in(&seen, given_up),
            seen.last().map(|(_, r)| r.clone()),
        )
    }
}

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        self.remember(error.rdkafka_error_code(), reason);
    }

    // librdkafka logs a failed handshake (FAIL) from its broker threads at once; the error
    // event may come later or not at all, so the log is where a refusal shows first.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) && facility != "CONFWARN"
            || facility == "FAIL"
        {
            self.remember(None, message);
        }
    }
}

impl ConsumerContext for LastError {}

/// Why the brokers refused this client, in terms of the configuration; `None` when the error
/// is not about who the client is (a broker down, a network blip), which the roles ride out.
pub fn refusal(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<String> {
    let lower = reason.to_ascii_lowercase();
    let authentication = code == Some(RDKafkaErrorCode::Authentication)
        || lower.contains("sasl authentication")
        || lower.contains("authentication failed");
    if authentication {
        return Some(
            "the broker refused the SASL credentials: check kafka.security.username, \
             kafka.security.password and kafka.security.mechanism"
                .into(),
        );
    }
    if lower.contains("certificate verify failed") || lower.contains("unable to get local issuer") {
        return Some(
            "the broker's TLS certificate is not signed by a trusted CA: set \
             kafka.security.ca_file to the CA that signed it (or check verify_hostname if the \
             name does not match)"
                .into(),
        );
    }
    if lower.contains("alert") && lower.contains("certificate") {
        return Some(
            "the broker refused this client's TLS certificate: check kafka.security.cert_file \
             and kafka.security.key_file"
                .into(),
        );
    }
    if lower.contains("wrong version number")
        || lower.contains("packet length too long")
        || lower.contains("incorrect security.protocol")
    {
        return Some(
            "the listener does not speak TLS: check kafka.security.protocol (PLAINTEXT or \
             SASL_PLAINTEXT for a listener without TLS)"
                .into(),
        );
    }
    if code == Some(RDKafkaErrorCode::SSL) || lower.contains("ssl handshake failed") {
        return Some(
            "the TLS handshake with the broker failed: check kafka.security.protocol, ca_file, \
             cert_file and key_file"
                .into(),
        );
    }
    None
}

/// The refusal in what librdkafka reported while connecting, with what to fix and the message
/// it is read from. A listener that closes the connection at the first request, three times or
/// until the client gives up waiting (`given_up`; librdkafka does not repeat an identical
/// error), speaks TLS to a client that does not (a Kafka listener says so; a TLS proxy just
/// closes).
pub fn refusal_in(seen: &[Reported], given_up: bool) -> Option<(String, String)> {
    if let Some(found) = seen
        .iter()
        .find_map(|(code, reason)| refusal(*code, reason).map(|fix| (fix, reason.clone())))
    {
        return Some(found);
    }
    let closed_at_first_request: Vec<&String> = seen
        .iter()
        .map(|(_, reason)| reason)
        .filter(|r| r.contains("Disconnected") && r.contains("in state APIVERSION_QUERY"))
        .collect();
    let often = closed_at_first_request.len() >= 3 || given_up;
    if often
        && !closed_at_first_request.is_empty()
        && !closed_at_first_request[0].contains("ssl://")
    {
        return Some((
            "the broker closes every connection at the first request, as a TLS listener does to \
             a client without TLS: check kafka.security.protocol (SSL or SASL_SSL for TLS)"
                .into(),
            closed_at_first_request[0].clone(),
        ));
    }
    None
}

/// Connects with the role's settings and asks for the cluster's metadata. Fails as soon as
/// librdkafka reports a refusal (see [`refusal`]); a cluster that does not answer within
/// `wait` is left to the role (the producer spools, the others retry), with a warning.
pub async fn check_connection(
    kafka: &KafkaConfig,
    bootstrap: &str,
    wait: Duration,
) -> anyhow::Result<()> {
    let context = LastError::default();
    let client: BaseConsumer<LastError> = super::client_config(kafka, bootstrap)
        .create_with_context(context.clone())
        .with_context(|| format!("configuring the Kafka client for {bootstrap}"))?;
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + wait;
        loop {
            // Serves error events to the context.
            let _ = client.poll(Duration::ZERO);
            let answered = client
                .fetch_metadata(None, Duration::from_millis(500))
                .map(|m| !m.brokers().is_empty())
                .unwrap_or(false);
            let given_up = Instant::now() >= deadline;
            let (refused, last) = context.verdict(given_up);
            if let Some((fix, reason)) = refused {
                anyhow::bail!(
                    "cannot connect to Kafka at {bootstrap}: {fix} (librdkafka: {reason})"
                );
            }
            if answered {
                return Ok(());
            }
            if given_up {
                tracing::warn!(
                    bootstrap = %bootstrap,
                    last_error = last.unwrap_or_default(),
                    "No Kafka broker answered yet; carrying on and retrying."
                );
                return Ok(());
            }
        }
    })
    .await
    .context("the Kafka connection check panicked")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_names_the_setting_to_fix() {
        let cases = [
            (
                Some(RDKafkaErrorCode::Authentication),
                "sasl_ssl://b:9093/bootstrap: SASL authentication error: SASL SCRAM authentication failed: broker responded with invalid-proof",
                "kafka.security.password",
            ),
            (
                None,
                "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (add broker's CA certificate to the trusted certificate store)",
                "kafka.security.ca_file",
            ),
            (
                None,
                "ssl://b:9093/bootstrap: SSL handshake failed: error:0A000412:SSL routines::sslv3 alert bad certificate",
                "kafka.security.cert_file",
            ),
            (
                None,
                "ssl://b:9092/bootstrap: SSL handshake failed: error:0A00010B:SSL routines::wrong version number",
                "kafka.security.protocol",
            ),
        ];
        for (code, reason, setting) in cases {
            let fix = refusal(code, reason).unwrap_or_else(|| panic!("no refusal for {reason}"));
            assert!(fix.contains(setting), "{reason} → {fix}");
        }
    }

    #[test]
    fn a_listener_that_resets_every_first_request_is_tls_spoken_to_plaintext() {
        let reset = |n: u32| {
            (
                None,
                format!("sasl_plaintext://127.0.0.1:19093/bootstrap: Disconnected: connection reset by peer (after {n}ms in state APIVERSION_QUERY)"),
            )
        };
        let once = [reset(0)];
        assert_eq!(refusal_in(&once, false), None, "a broker restarting once");
        let (fix, _) = refusal_in(&once, true).expect("closed until the client gave up");
        assert!(fix.contains("kafka.security.protocol"), "{fix}");
        let again = [reset(0), reset(4), reset(5)];
        assert!(refusal_in(&again, false).is_some());
        let refused = [(None, "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms in state CONNECT)".to_string())];
        assert_eq!(refusal_in(&refused, true), None, "a broker that is down");
    }

    #[test]
    fn a_broker_that_is_down_is_not_a_refusal() {
        assert_eq!(
            refusal(
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"
            ),
            None
        );
        assert_eq!(
            refusal(
                Some(RDKafkaErrorCode::AllBrokersDown),
                "1/1 brokers are down"
            ),
            None
        );
    }
}
