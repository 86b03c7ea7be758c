//! Backtests that can be checked against a known answer:
//! - a history drawn from a purchase process whose parameters are known: the fit at the
//!   cut-off recovers them within sampling error, and the predictions for the horizon add up
//!   to what the drawn customers did;
//! - CDNOW's 2,357-customer sample (39 weeks to fit, 39 to check, as Fader, Hardie & Lee
//!   report it): the calibration by repeat-purchase group matches `lifetimes` on the same data
//!   and has the published shape.

use std::process::Command;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rand::SeedableRng;
use serde_json::Value;
use woostream_core::config::EnricherConfig;
use woostream_core::contract::events::OrderStatus;
use woostream_enricher::clv::{BgNbd, GammaGamma};
use woostream_enricher::customer::{CustomerState, LedgerEntry, DAY_MS};
use woostream_enricher::model::backtest::backtest;
use woostream_enricher::model::synthetic::PurchaseProcess;

fn order(id: i64, created_ms: i64, value: f64) -> LedgerEntry {
    LedgerEntry {
        order_id: id,
        created_ms,
        modified_ms: created_ms,
        total: (value * 1e6).round() as i64,
        refunded: 0,
        status: OrderStatus::Completed,
        paid: true,
        payment_method: None,
        discounted: false,
        items: Box::default(),
    }
}

fn customer(orders: Vec<LedgerEntry>) -> CustomerState {
    CustomerState {
        orders,
        ..Default::default()
    }
}

fn config() -> EnricherConfig {
    EnricherConfig::default()
}

fn within(what: &str, got: f64, truth: f64, tolerance: f64) {
    let rel = ((got - truth) / truth).abs();
    assert!(
        rel <= tolerance,
        "{what}: fitted {got:.4}, true {truth:.4} ({:.1} % off, allowed {:.0} %)",
        100.0 * rel,
        100.0 * tolerance
    );
}

#[test]
fn a_history_drawn_from_known_parameters_is_recovered_and_predicted() {
    let truth = PurchaseProcess {
        bgnbd: BgNbd {
            r: 0.6,
            alpha: 40.0,
            a: 0.8,
            b: 2.5,
        },
        gamma_gamma: GammaGamma {
            p: 6.0,
            q: 4.0,
            v: 20.0,
        },
    };
    let start = Utc
        .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let drawn = truth.draw(8_000, 84.0, 546.0, &mut rng);
    let mut next_id = 0;
    let customers: Vec<CustomerState> = drawn
        .iter()
        .map(|c| {
            customer(
                c.purchases
                    .iter()
                    .map(|(day, value)| {
                        next_id += 1;
                        order(next_id, start + (day * DAY_MS as f64) as i64, *value)
                    })
                    .collect(),
            )
        })
        .collect();
    let as_of = DateTime::from_timestamp_millis(start + 273 * DAY_MS).unwrap();
    let (report, _) = backtest("sim", &customers, as_of, 273, Utc::now(), &config());
    println!(
        "fitted r={:.3} alpha={:.2} a={:.3} b={:.3} p={:.2} q={:.2} v={:.2}; predicted {:.0} vs actual {:.0} purchases, spend {:.0} vs {:.0}; MAE {:.3}; AUC P(alive) {:.3}, expected purchases {:.3}",
        report.r, report.alpha, report.a, report.b, report.p, report.q, report.v,
        report.predicted_purchases, report.actual_purchases, report.predicted_spend,
        report.actual_spend, report.mean_absolute_error, report.p_alive_auc,
        report.expected_purchases_auc
    );
    // Sampling error with 8,000 customers: r and alpha are pinned down well, the dropout
    // shapes a and b less (their ratio better than each).
    within("r", report.r, truth.bgnbd.r, 0.15);
    within("alpha", report.alpha, truth.bgnbd.alpha, 0.15);
    within(
        "a / (a + b)",
        report.a / (report.a + report.b),
        0.8 / 3.3,
        0.2,
    );
    within(
        "p / (q - 1) x v (mean spend)",
        report.p * report.v / (report.q - 1.0),
        6.0 * 20.0 / 3.0,
        0.1,
    );
    within(
        "predicted purchases",
        report.predicted_purchases,
        report.actual_purchases,
        0.1,
    );
    within(
        "predicted spend",
        report.predicted_spend,
        report.actual_spend,
        0.15,
    );
    assert!(
        report.p_alive_auc > 0.6,
        "P(alive) ranks repeat buyers who come back: AUC {}",
        report.p_alive_auc
    );
    assert!(
        report.expected_purchases_auc > 0.6,
        "expected purchases rank who comes back: AUC {}",
        report.expected_purchases_auc
    );
    // Calibration: deciles increase on both sides, and the top decile is where purchases are.
    let d = &report.deciles;
    assert_eq!(d.len(), 10);
    assert!(d.windows(2).all(|w| w[1].predicted >= w[0].predicted));
    assert!(d[9].actual > 3.0 * d[0].actual.max(0.01));
    within("top decile", d[9].predicted, d[9].actual, 0.2);
}

fn cdnow() -> (Vec<CustomerState>, DateTime<Utc>) {
    let text = std::fs::read_to_string(
        woostream_tests::repo_root().join("tests/fixtures/cdnow/CDNOW_sample.txt"),
    )
    .expect("CDNOW fixture");
    let mut by_customer: std::collections::BTreeMap<i64, Vec<LedgerEntry>> = Default::default();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let id: i64 = f[1].parse().unwrap();
        let date = NaiveDate::parse_from_str(f[2], "%Y%m%d").unwrap();
        let ms = date
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        let value: f64 = f[4].parse().unwrap();
        by_customer
            .entry(id)
            .or_default()
            .push(order(i as i64, ms, value));
    }
    let cut = Utc.with_ymd_and_hms(1997, 9, 30, 0, 0, 0).unwrap();
    (by_customer.into_values().map(customer).collect(), cut)
}

fn lifetimes_holdout() -> Value {
    let python = woostream_tests::python();
    let out = Command::new(&python)
        .arg(woostream_tests::repo_root().join("tests/independent/lifetimes_reference.py"))
        .args(["holdout"])
        .arg(woostream_tests::repo_root().join("tests/fixtures/cdnow/CDNOW_sample.txt"))
        .args(["1997-09-30", "1998-06-30"])
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn cdnow_holdout_calibration_matches_lifetimes_and_the_published_shape() {
    let (customers, cut) = cdnow();
    assert_eq!(customers.len(), 2_357);
    let (report, _) = backtest("cdnow", &customers, cut, 273, Utc::now(), &config());
    let reference = lifetimes_holdout();
    println!(
        "woostream: {}",
        serde_json::to_string(
            &report
                .by_frequency
                .iter()
                .map(|g| (g.group.clone(), g.customers, g.predicted, g.actual))
                .collect::<Vec<_>>()
        )
        .unwrap()
    );
    println!("lifetimes: {}", reference["by_frequency"]);
    println!(
        "fitted r={:.4} alpha={:.3} a={:.4} b={:.4}; predicted {:.1} vs actual {:.0} repeat purchases in 39 weeks; MAE {:.3}; AUC P(alive) {:.3}, expected purchases {:.3}",
        report.r, report.alpha, report.a, report.b, report.predicted_purchases,
        report.actual_purchases, report.mean_absolute_error, report.p_alive_auc,
        report.expected_purchases_auc
    );
    for k in ["r", "alpha", "a", "b"] {
        let ours = match k {
            "r" => report.r,
            "alpha" => report.alpha,
            "a" => report.a,
            _ => report.b,
        };
        within(k, ours, reference["bgnbd"][k].as_f64().unwrap(), 1e-3);
    }
    let groups = reference["by_frequency"].as_array().unwrap();
    assert_eq!(report.by_frequency.len(), groups.len());
    for (ours, theirs) in report.by_frequency.iter().zip(groups) {
        assert_eq!(ours.group, theirs["group"].as_str().unwrap());
        assert_eq!(
            ours.customers,
            theirs["customers"].as_i64().unwrap(),
            "group {}",
            ours.group
        );
        within(
            &format!("predicted, group {}", ours.group),
            ours.predicted,
            theirs["predicted"].as_f64().unwrap(),
            1e-3,
        );
        let actual = theirs["actual"].as_f64().unwrap();
        assert!(
            (ours.actual - actual).abs() < 0.05,
            "actual, group {}: {} vs lifetimes {}",
            ours.group,
            ours.actual,
            actual
        );
    }
    // The published shape (Fader, Hardie & Lee 2005, conditional expectations): both rise
    // with the calibration frequency, and the model tracks the holdout within a purchase in
    // every group, slightly below it.
    let f = &report.by_frequency;
    assert!(f
        .windows(2)
        .all(|w| w[1].predicted > w[0].predicted && w[1].actual > w[0].actual * 0.9));
    assert!(f.iter().all(|g| (g.predicted - g.actual).abs() < 0.5));
    within(
        "total repeat purchases",
        report.predicted_purchases,
        report.actual_purchases,
        0.15,
    );
    assert!(report.p_alive_auc > 0.5);
    assert!(report.expected_purchases_auc > 0.6);
    // Segments: Champions and loyal customers come back more often than the lost.
    let share = |name: &str| {
        report
            .segments
            .iter()
            .find(|s| s.segment == name)
            .map(|s| s.returned as f64 / s.customers as f64)
    };
    println!(
        "returned by segment: {:?}",
        report
            .segments
            .iter()
            .map(|s| (s.segment.clone(), s.customers, s.returned))
            .collect::<Vec<_>>()
    );
    assert!(share("Champions").unwrap() > share("Lost").or(share("Hibernating")).unwrap());
}
