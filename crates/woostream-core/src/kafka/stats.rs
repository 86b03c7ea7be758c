//! librdkafka's own statistics of the clients that carry a role's records (the producer's
//! webhook producer, the enricher's and the sinks' consumers), as Prometheus gauges: how long
//! each broker takes to answer, and what waits in the client's queues. A slow webhook answer
//! or a growing lag is then told apart: the brokers, or the client.

use std::sync::LazyLock;

use anyhow::Context as _;
use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};
use rdkafka::consumer::ConsumerContext;
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use crate::config::KafkaConfig;

static BROKER_RTT: LazyLock<GaugeVec> = LazyLock::new(|| {
    GaugeVec::new(
        Opts::new(
            "woostream_kafka_broker_rtt_seconds",
            "Round-trip time of requests to each broker over librdkafka's last statistics window, by quantile (0.5, 0.99); a consumer's fetches include the broker's wait for new records (fetch.wait.max.ms).",
        ),
        &["role", "client", "broker", "quantile"],
    )
    .expect("a valid metric")
});

static BROKER_REQUESTS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "woostream_kafka_broker_requests",
            "Requests to each broker waiting to be sent (queued) or for their answer (in_flight).",
        ),
        &["role", "client", "broker", "state"],
    )
    .expect("a valid metric")
});

static QUEUED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "woostream_kafka_client_queued_messages",
            "Records held in the client: a producer's not yet acknowledged, a consumer's fetched and not yet handed to woostream.",
        ),
        &["role", "client"],
    )
    .expect("a valid metric")
});

/// Registers the gauges in `registry` (once per registry; roles may share one).
pub fn register(registry: &Registry) -> anyhow::Result<()> {
    for collector in [
        Box::new(BROKER_RTT.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(BROKER_REQUESTS.clone()),
        Box::new(QUEUED.clone()),
    ] {
        crate::ops::register_shared(registry, collector)
            .context("registering the Kafka client statistics")?;
    }
    Ok(())
}

/// Asks librdkafka for statistics every `kafka.statistics_interval_ms` (0: never), for a
/// client made with [`ClientStats`].
pub fn enable(config: &mut rdkafka::ClientConfig, kafka: &KafkaConfig) {
    if kafka.statistics_interval_ms > 0 {
        config.set(
            "statistics.interval.ms",
            kafka.statistics_interval_ms.to_string(),
        );
    }
}

/// A client of `role` made from `config`, its statistics asked for and turned into the gauges
/// above.
pub fn create<T>(
    mut config: rdkafka::ClientConfig,
    kafka: &KafkaConfig,
    role: &'static str,
) -> rdkafka::error::KafkaResult<T>
where
    T: rdkafka::config::FromClientConfigAndContext<ClientStats>,
{
    enable(&mut config, kafka);
    config.create_with_context(ClientStats { role })
}

/// The client context that turns statistics into the gauges above, for `role`.
#[derive(Clone, Copy, Debug)]
pub struct ClientStats {
    pub role: &'static str,
}

impl ClientContext for ClientStats {
    fn stats(&self, statistics: Statistics) {
        record(self.role, &statistics);
    }
}

impl ConsumerContext for ClientStats {}

/// Sets the gauges from one statistics report of a `role`'s client.
pub fn record(role: &str, s: &Statistics) {
    let client = s.client_type.as_str();
    let queued = if client == "producer" {
        i64::try_from(s.msg_cnt).unwrap_or(i64::MAX)
    } else {
        s.topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0)
            .map(|p| p.fetchq_cnt.max(0))
            .sum()
    };
    QUEUED.with_label_values(&[role, client]).set(queued);
    // Bootstrap and coordinator entries (node id -1) are not brokers.
    for b in s.brokers.values().filter(|b| b.nodeid >= 0) {
        let broker = b.nodeid.to_string();
        if let Some(rtt) = b.rtt.as_ref().filter(|w| w.cnt > 0) {
            for (quantile, micros) in [("0.5", rtt.p50), ("0.99", rtt.p99)] {
                BROKER_RTT
                    .with_label_values(&[role, client, &broker, quantile])
                    .set(micros as f64 / 1e6);
            }
        }
        for (state, count) in [("queued", b.outbuf_cnt), ("in_flight", b.waitresp_cnt)] {
            BROKER_REQUESTS
                .with_label_values(&[role, client, &broker, state])
                .set(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producers_report_sets_its_queue_and_each_brokers_round_trip() {
        // A report as librdkafka writes it (trimmed to what is read here).
        let json = r#"{"name":"rdkafka#producer-1","client_id":"woostream","type":"producer",
            "ts":1,"time":1,"age":1,"replyq":0,"msg_cnt":42,"msg_size":0,"msg_max":0,
            "msg_size_max":0,"tx":0,"tx_bytes":0,"rx":0,"rx_bytes":0,"txmsgs":0,"txmsg_bytes":0,
            "rxmsgs":0,"rxmsg_bytes":0,"simple_cnt":0,"metadata_cache_cnt":0,
            "brokers":{
              "b:9092/1":{"name":"b:9092/1","nodeid":1,"nodename":"b:9092","source":"learned",
                "state":"UP","stateage":1,"outbuf_cnt":3,"outbuf_msg_cnt":3,"waitresp_cnt":2,
                "waitresp_msg_cnt":2,"tx":1,"txbytes":1,"txerrs":0,"txretries":0,"txidle":0,
                "req_timeouts":0,"rx":1,"rxbytes":1,"rxerrs":0,"rxcorriderrs":0,"rxpartial":0,
                "rxidle":0,"zbuf_grow":0,"buf_grow":0,"wakeups":0,"connects":1,"disconnects":0,
                "rtt":{"min":1000,"max":9000,"avg":2000,"sum":4000,"cnt":2,"stddev":0,
                  "hdrsize":0,"p50":1500,"p75":0,"p90":0,"p95":0,"p99":8000,"p99_99":0,
                  "outofrange":0},
                "req":{},"toppars":{}},
              "GroupCoordinator":{"name":"GroupCoordinator","nodeid":-1,"nodename":"","source":"logical",
                "state":"UP","stateage":1,"outbuf_cnt":9,"outbuf_msg_cnt":0,"waitresp_cnt":0,
                "waitresp_msg_cnt":0,"tx":0,"txbytes":0,"txerrs":0,"txretries":0,"txidle":0,
                "req_timeouts":0,"rx":0,"rxbytes":0,"rxerrs":0,"rxcorriderrs":0,"rxpartial":0,
                "rxidle":0,"zbuf_grow":0,"buf_grow":0,"wakeups":0,"connects":0,"disconnects":0,
                "req":{},"toppars":{}}},
            "topics":{}}"#;
        let s: Statistics = serde_json::from_str(json).expect("a statistics report");
        record("unit-test", &s);
        assert_eq!(
            QUEUED.with_label_values(&["unit-test", "producer"]).get(),
            42
        );
        let rtt = |q| {
            BROKER_RTT
                .with_label_values(&["unit-test", "producer", "1", q])
                .get()
        };
        assert_eq!((rtt("0.5"), rtt("0.99")), (0.0015, 0.008));
        assert_eq!(
            BROKER_REQUESTS
                .with_label_values(&["unit-test", "producer", "1", "queued"])
                .get(),
            3
        );
        assert!(
            BROKER_REQUESTS
                .get_metric_with_label_values(&["unit-test", "producer", "-1", "queued"])
                .is_ok_and(|g| g.get() == 0),
            "the group coordinator entry is not a broker"
        );
    }
}
