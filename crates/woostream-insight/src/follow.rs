//! The topics the page is drawn from, followed from their beginning by a consumer outside any
//! group (a read-only view: it commits nothing and never slows another role), and the end
//! offsets of every topic sampled for the live flow.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use woostream_core::contract::codec::{Codecs, Decoder};
use woostream_core::contract::enriched::{Alert, Backtest, CustomerProfile, ShopModel};
use woostream_core::contract::events::CustomerKey;
use woostream_core::contract::sink_records::Delivery;
use woostream_core::kafka::reading::{follower, partitions_of};
use woostream_core::kafka::watermarks;

use crate::figures::View;

/// How often the end offsets are sampled.
const FLOW_EVERY: Duration = Duration::from_secs(5);

/// The threads following the topics (join them after `shutdown`).
pub struct Running {
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Input {
    Profiles,
    Models,
    Backtests,
    Deliveries,
    Alerts,
}

/// Starts following `config`'s topics into `view`; `ready` holds once every input is
/// assigned.
pub async fn start(
    ctx: &woostream_core::role::RoleContext,
    view: Arc<Mutex<View>>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<Running> {
    let (config, bootstrap, shutdown) = (&ctx.config, ctx.bootstrap.as_str(), ctx.shutdown.clone());
    let codecs = Codecs::register(config, &[])
        .await
        .context("the insight role's schema registry client")?;
    let t = &config.topics;
    let inputs: HashMap<String, Input> = [
        (&t.profiles.name, Input::Profiles),
        (&t.models.name, Input::Models),
        (&t.backtests.name, Input::Backtests),
        (&t.deliveries.name, Input::Deliveries),
        (&t.alerts.name, Input::Alerts),
    ]
    .into_iter()
    .map(|(n, i)| (n.clone(), i))
    .collect();
    let consumer = follower(&config.kafka, bootstrap, "insight", false)?;
    let flow = follower(&config.kafka, bootstrap, "insight-flow", false)?;
    let all_topics: Vec<String> = t.all().iter().map(|(_, c)| c.name.clone()).collect();
    let (records, sampler) = {
        let (decoder, runtime) = (codecs.decoder.clone(), tokio::runtime::Handle::current());
        let (view_in, shutdown_in) = (view.clone(), shutdown.clone());
        let records = std::thread::Builder::new()
            .name("insight".into())
            .spawn(move || {
                let mut tpl = TopicPartitionList::new();
                for topic in inputs.keys() {
                    match partitions_of(&consumer, topic) {
                        Ok(ps) => {
                            for p in ps {
                                let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
                            }
                        }
                        Err(e) => tracing::warn!(%topic, error = format!("{e:#}"), "The insight page leaves out a topic it cannot read."),
                    }
                }
                if let Err(e) = consumer.assign(&tpl) {
                    tracing::error!(error = %e, "The insight page cannot read its topics.");
                    return;
                }
                ready.store(true, Ordering::Relaxed);
                while !shutdown_in.is_cancelled() {
                    let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else { continue };
                    let Some(input) = inputs.get(m.topic()).copied() else { continue };
                    if m.key() == Some(woostream_core::kafka::reading::END_MARKER.as_bytes()) {
                        continue;
                    }
                    apply(&view_in, &decoder, &runtime, input, m.key(), m.payload());
                }
            })
            .context("spawning the insight reader")?;
        let view = view.clone();
        let sampler = std::thread::Builder::new()
            .name("insight-flow".into())
            .spawn(move || {
                let mut next = Instant::now();
                while !shutdown.is_cancelled() {
                    if Instant::now() < next {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    next = Instant::now() + FLOW_EVERY;
                    let at = chrono::Utc::now().timestamp_millis();
                    for topic in &all_topics {
                        // A topic that cannot be read now is sampled again next time.
                        if let Ok((_, end)) = watermarks(&flow, topic, Duration::from_secs(2)) {
                            view.lock()
                                .expect("insight view lock")
                                .on_flow(topic, at, end);
                        }
                    }
                }
            })
            .context("spawning the insight flow sampler")?;
        (records, sampler)
    };
    Ok(Running {
        threads: vec![records, sampler],
    })
}

fn apply(
    view: &Mutex<View>,
    decoder: &Decoder,
    runtime: &tokio::runtime::Handle,
    input: Input,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) {
    macro_rules! read {
        ($t:ty, $bytes:expr) => {
            match runtime.block_on(decoder.decode_async::<$t>($bytes)) {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "The insight page skips a record it cannot read.");
                    return;
                }
            }
        };
    }
    match input {
        Input::Profiles => {
            let Some(k) = key else { return };
            let key = read!(CustomerKey, k);
            let profile = match payload {
                Some(p) => Some(read!(CustomerProfile, p)),
                None => None,
            };
            view.lock().expect("insight view lock").on_profile(
                &key.shop_id,
                &key.customer,
                profile.as_ref(),
            );
        }
        Input::Models => {
            let Some(p) = payload else { return };
            let model = read!(ShopModel, p);
            view.lock().expect("insight view lock").on_model(model);
        }
        Input::Backtests => {
            let Some(p) = payload else { return };
            let b = read!(Backtest, p);
            view.lock().expect("insight view lock").on_backtest(b);
        }
        Input::Deliveries => {
            let Some(p) = payload else { return };
            let d = read!(Delivery, p);
            view.lock().expect("insight view lock").on_delivery(&d);
        }
        Input::Alerts => {
            let Some(p) = payload else { return };
            let a = read!(Alert, p);
            view.lock().expect("insight view lock").on_alert(&a);
        }
    }
}
