//! What `woostream run` prints: the live line of a sale, and the summary at its end (segments,
//! alerts, models, the backtest, what Slack and the CRM received, the records per topic).

use std::time::{Duration, Instant};

use woostream_core::config::Config;

/// Sum of a metric's series, optionally only those with `label` = `value`.
pub fn metric_sum(registry: &prometheus::Registry, name: &str, label: Option<(&str, &str)>) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            label.is_none_or(|(k, v)| m.get_label().iter().any(|l| l.name() == k && l.value() == v))
        })
        // A series is a counter or a gauge; the other reads 0.
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum::<f64>()
        // An empty f64 sum is -0.
        + 0.0
}

/// One line: what the Slack sink has posted so far, per channel.
pub fn slack_line(registry: &prometheus::Registry) -> Option<String> {
    let families = registry.gather();
    let family = families
        .iter()
        .find(|f| f.name() == "woostream_slack_messages_total")?;
    let mut per_channel: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for m in family.get_metric() {
        let label = |k: &str| {
            m.get_label()
                .iter()
                .find(|l| l.name() == k)
                .map(|l| l.value().to_string())
                .unwrap_or_default()
        };
        let e = per_channel.entry(label("channel")).or_default();
        e.0 += m.get_counter().get_value();
        if label("outcome") == "digest" {
            e.1 += m.get_counter().get_value();
        }
    }
    let queued = metric_sum(registry, "woostream_slack_queue_depth", None);
    Some(format!(
        "slack: {} · {queued} queued",
        per_channel
            .iter()
            .map(|(c, (n, d))| format!("{c} {n} messages ({d} digests)"))
            .collect::<Vec<_>>()
            .join(" · ")
    ))
}

/// One line: what the CRM sink has written so far.
pub fn crm_line(registry: &prometheus::Registry) -> Option<String> {
    let upserts = |object: &str| {
        metric_sum(
            registry,
            "woostream_crm_upserts_total",
            Some(("object", object)),
        )
    };
    let requests = metric_sum(registry, "woostream_crm_requests_total", None);
    if requests == 0.0 && metric_sum(registry, "woostream_crm_pending", None) == 0.0 {
        return None;
    }
    Some(format!(
        "crm: {} contact and {} deal upserts in {requests} requests · {} waiting · {:.1} changes read per change sent · budget {} left in 10 s",
        upserts("contact"),
        upserts("deal"),
        metric_sum(registry, "woostream_crm_pending", None),
        metric_sum(registry, "woostream_crm_coalescing_ratio", None),
        metric_sum(
            registry,
            "woostream_crm_budget_remaining",
            Some(("window", "10s"))
        ),
    ))
}

/// Waits (at most 90 s) until `done` has stopped moving for 3 s and nothing is `queued`: a
/// sink's backlog drains after the sale's last event was read.
pub async fn wait_until_quiet(registry: &prometheus::Registry, done: &str, queued: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut quiet_since = Instant::now();
    let mut last = -1.0;
    while Instant::now() < deadline {
        let handled = metric_sum(registry, done, None);
        if handled != last || metric_sum(registry, queued, None) > 0.0 {
            last = handled;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the CRM holds after the sale: contacts, deals by stage, segments.
pub async fn print_crm(
    registry: &prometheus::Registry,
    crm: &woostream_sink::crm::runner::CrmSink,
) {
    wait_until_quiet(
        registry,
        "woostream_crm_upserts_total",
        "woostream_crm_pending",
    )
    .await;
    if let Some(line) = crm_line(registry) {
        println!("\n{line}");
    }
    let Some(store) = &crm.store else {
        return;
    };
    let store = store.lock().expect("CRM store");
    let mut stages: std::collections::BTreeMap<&str, usize> = Default::default();
    for d in store.deals.records.values() {
        *stages
            .entry(d.get("dealstage").map_or("?", String::as_str))
            .or_default() += 1;
    }
    let mut segments: std::collections::BTreeMap<&str, usize> = Default::default();
    for c in store.contacts.records.values() {
        *segments
            .entry(
                c.get("woo_rfm_segment")
                    .map_or("(no profile yet)", String::as_str),
            )
            .or_default() += 1;
    }
    let requests = metric_sum(registry, "woostream_crm_requests_total", None);
    let events = metric_sum(registry, "woostream_crm_events_total", None);
    println!(
        "\nCRM (dry run, HubSpot semantics): {} contacts, {} deals, {} deal→contact associations; {requests} API requests for {events} changes read from Kafka:",
        store.contacts.records.len(),
        store.deals.records.len(),
        store.associations.len()
    );
    println!("  deals by stage:");
    for (stage, n) in &stages {
        println!("    {stage:<22} {n:>6}");
    }
    println!("  contacts by RFM segment:");
    for (segment, n) in &segments {
        println!("    {segment:<22} {n:>6}");
    }
}

/// What each Slack channel received (dry run) or was sent.
pub async fn print_slack(
    config: &Config,
    registry: &prometheus::Registry,
    slack: &woostream_sink::slack::runner::SlackSink,
) {
    // Slack allows about one message a second per channel: the backlog takes a while.
    wait_until_quiet(
        registry,
        "woostream_slack_alerts_total",
        "woostream_slack_queue_depth",
    )
    .await;
    let Some(recorded) = &slack.recorded else {
        if let Some(line) = slack_line(registry) {
            println!("\n{line}");
        }
        return;
    };
    let recorded = recorded.lock().expect("dry-run log").clone();
    println!("\nSlack (dry run): what each channel would have received:");
    for c in &config.slack.channels {
        let messages: Vec<_> = recorded.iter().filter(|r| r.channel == c.name).collect();
        let alerts = metric_sum(
            registry,
            "woostream_slack_alerts_total",
            Some(("channel", &c.name)),
        );
        let digests = messages
            .iter()
            .filter(|m| m.message.text.contains(" in the last "))
            .count();
        let threaded = messages.iter().filter(|m| m.thread_ts.is_some()).count();
        println!(
            "  {:<12} {:>4} messages for {alerts} alerts ({digests} digests, {threaded} thread replies)",
            c.name,
            messages.len()
        );
        for m in messages.iter().take(3) {
            println!(
                "      {}",
                woostream_sink::slack::blocks::cut(&m.message.text, 150)
            );
        }
        if messages.len() > 3 {
            println!("      …");
        }
    }
}

/// One line: profiles, alerts and the segment distribution so far.
pub fn insights_line(v: &woostream_enricher::published::View) -> String {
    let segments: Vec<String> = v
        .segments()
        .iter()
        .map(|(s, n)| format!("{} {n}", s.name()))
        .collect();
    format!(
        "profiles {} · alerts {} · segments: {}",
        v.profiles.len(),
        v.alerts.len(),
        if segments.is_empty() {
            "—".into()
        } else {
            segments.join(" · ")
        }
    )
}

/// Sum of a counter's series whose `topic` label is `topic`.
pub fn counter(registry: &prometheus::Registry, name: &str, topic: &str) -> f64 {
    metric_sum(registry, name, Some(("topic", topic)))
}

pub fn describe_model(m: &woostream_core::contract::enriched::ShopModel) -> String {
    // 0: too few of the shop's orders to set a threshold of its own yet.
    let threshold = |v: f64| {
        if v > 0.0 {
            format!("{v:.2}")
        } else {
            "not set yet (too few orders)".into()
        }
    };
    format!(
        "{}: {} customers ({} repeat); BG/NBD {} r={:.4} alpha={:.2}d a={:.4} b={:.4}; Gamma-Gamma {} p={:.3} q={:.3} v={:.2}; VIP from CLV {}; p95 order {}; fitted in {:.3}s",
        m.shop_id,
        m.customers,
        m.repeat_customers,
        if m.bgnbd_fitted { "fitted" } else { "prior" },
        m.r,
        m.alpha,
        m.a,
        m.b,
        if m.gamma_gamma_fitted { "fitted" } else { "prior" },
        m.p,
        m.q,
        m.v,
        threshold(m.vip_clv_threshold),
        threshold(m.order_value_p95),
        m.fit_seconds
    )
}

/// A backtest for people: the fit, the totals, the calibration tables and the rankings.
pub fn describe_backtest(b: &woostream_core::contract::enriched::Backtest) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: fitted on {} customers ({} repeat) as of {}; BG/NBD r={:.4} alpha={:.2}d a={:.4} b={:.4}; Gamma-Gamma p={:.3} q={:.3} v={:.2}",
        b.shop_id,
        b.customers,
        b.repeat_customers,
        b.as_of.format("%Y-%m-%d %H:%M UTC"),
        b.r,
        b.alpha,
        b.a,
        b.b,
        b.p,
        b.q,
        b.v
    );
    if b.customers == 0 {
        let _ = writeln!(
            out,
            "  nothing to backtest: no customer had ordered by the cut-off"
        );
        return out;
    }
    let error = |p: f64, a: f64| {
        if a > 0.0 {
            format!("{:+.1} %", 100.0 * (p - a) / a)
        } else {
            "n/a".into()
        }
    };
    let _ = writeln!(
        out,
        "  next {} days: purchase days predicted {:.1}, actual {:.0} ({}); spend predicted {:.2}, actual {:.2} ({}); mean absolute error {:.3} per customer",
        b.horizon_days,
        b.predicted_purchases,
        b.actual_purchases,
        error(b.predicted_purchases, b.actual_purchases),
        b.predicted_spend,
        b.actual_spend,
        error(b.predicted_spend, b.actual_spend),
        b.mean_absolute_error
    );
    for (title, groups) in [
        ("by repeat purchases at the cut-off", &b.by_frequency),
        ("by decile of prediction", &b.deciles),
    ] {
        let _ = writeln!(out, "  {title}:  group  customers  predicted  actual");
        for g in groups {
            let _ = writeln!(
                out,
                "    {:>5}  {:>9}  {:>9.3}  {:>6.3}",
                g.group, g.customers, g.predicted, g.actual
            );
        }
    }
    let _ = writeln!(out, "  came back, by segment at the cut-off:");
    for s in &b.segments {
        let _ = writeln!(
            out,
            "    {:<20} {:>6} of {:>6} ({:.0} %)",
            s.segment,
            s.returned,
            s.customers,
            100.0 * s.returned as f64 / s.customers.max(1) as f64
        );
    }
    let _ = write!(
        out,
        "  ranking who came back (AUC, 0.5 = chance): expected purchases {:.3}; P(alive) among repeat buyers {:.3}",
        b.expected_purchases_auc, b.p_alive_auc
    );
    out
}

/// An address a browser can open: a wildcard listen address is reached on localhost.
pub fn browsable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

/// The most valuable repeat customer as their profile describes them: what the taste fields
/// say.
pub fn taste_line(v: &woostream_enricher::published::View) -> Option<String> {
    let p = v
        .profiles
        .values()
        .filter(|p| p.typical_interval_days.is_some())
        .max_by_key(|p| (p.clv_12_months, p.customer.clone()))?;
    let names = |l: &[woostream_core::contract::enriched::TasteEntry]| {
        l.iter()
            .take(3)
            .map(|e| {
                format!(
                    "{} ({} orders)",
                    e.name.clone().unwrap_or_else(|| format!("#{}", e.id)),
                    e.orders
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let due = p
        .replenishment
        .iter()
        .map(|r| {
            format!(
                "{} on {}{}",
                r.name
                    .clone()
                    .unwrap_or_else(|| format!("#{}", r.product_id)),
                r.due_at.format("%Y-%m-%d"),
                if r.announced { " (announced)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let with_next = v
        .profiles
        .values()
        .filter(|p| p.expected_next_purchase_at.is_some())
        .count();
    let with_due = v
        .profiles
        .values()
        .filter(|p| p.replenishment.iter().any(|r| r.due_at <= p.as_of))
        .count();
    Some(format!(
        "The most valuable repeat customer as their profile describes them (customer {}): {} · {} orders · CLV {}\n  buys most: {}\n  top products: {}\n  rhythm: every ~{:.0} days (mean {:.0}) · pays with {} · discounts on {:.0} % of orders · next purchase expected {}\n  due to buy again: {}\nProfiles with an expected next purchase: {with_next}; with a product due to be bought again: {with_due}.",
        p.customer,
        p.segment.name(),
        p.orders_count,
        p.clv_12_months.amount().round_dp(2),
        names(&p.top_categories),
        names(&p.top_products),
        p.typical_interval_days.unwrap_or_default(),
        p.mean_interval_days.unwrap_or_default(),
        p.preferred_payment_method.as_deref().unwrap_or("n/a"),
        100.0 * p.discount_share,
        p.expected_next_purchase_at
            .map_or("not within a year".into(), |t| t.format("%Y-%m-%d").to_string()),
        if due.is_empty() { "nothing yet".to_string() } else { due },
    ))
}
