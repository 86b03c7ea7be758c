//! Backtests: fit a model on what was known at a cut-off, predict each customer's purchases
//! and spend over a horizon, and compare with what they actually did. Pure: customers' full
//! ledgers in, the report out.
//!
//! Purchases are counted as BG/NBD counts them: distinct UTC days with a counted order.

use chrono::{DateTime, Utc};
use woostream_core::config::EnricherConfig;
use woostream_core::contract::enriched::{Backtest, CalibrationGroup, SegmentReturn};

use crate::customer::{summarise, CustomerState, DAY_MS};
use crate::model::fit::fit_states;
use crate::model::Model;
use crate::rfm::segment_of;

/// One customer's prediction at the cut-off and what happened in the horizon.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Repeat purchase days before the cut-off.
    pub frequency: f64,
    pub p_alive: f64,
    pub segment: woostream_core::contract::enriched::Segment,
    pub predicted: f64,
    pub actual: f64,
    pub predicted_spend: f64,
    pub actual_spend: f64,
}

/// The backtest of one shop: its customers' full ledgers, the cut-off and the horizon.
pub fn backtest(
    shop_id: &str,
    customers: &[CustomerState],
    as_of: DateTime<Utc>,
    horizon_days: u32,
    run_at: DateTime<Utc>,
    config: &EnricherConfig,
) -> (Backtest, Vec<Outcome>) {
    let cut = as_of.timestamp_millis();
    let end = cut + i64::from(horizon_days) * DAY_MS;
    let known: Vec<CustomerState> = customers
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.orders.retain(|o| o.created_ms <= cut);
            c
        })
        .filter(|c| c.orders.iter().any(|o| o.counted()))
        .collect();
    let record = fit_states(shop_id, &known, as_of, run_at, config);
    let model = Model::from_record(&record).unwrap_or_else(|| Model::prior(config));
    let horizon = f64::from(horizon_days);
    let outcomes: Vec<Outcome> = customers
        .iter()
        .filter_map(|full| {
            let mut before = full.clone();
            before.orders.retain(|o| o.created_ms <= cut);
            let summary = summarise(&before, cut);
            if summary.orders_count == 0 {
                return None;
            }
            let mut days: Vec<i64> = Vec::new();
            let mut actual_spend = 0i64;
            for o in full
                .orders
                .iter()
                .filter(|o| o.counted() && o.created_ms > cut && o.created_ms <= end)
            {
                days.push(o.created_ms.div_euclid(DAY_MS));
                actual_spend = actual_spend.saturating_add(o.net());
            }
            days.sort_unstable();
            days.dedup();
            // Another order on the day of the last purchase before the cut-off is the same
            // purchase day, already in the history.
            let last_day = summary.last_order_ms.map(|l| l.div_euclid(DAY_MS));
            days.retain(|d| Some(*d) != last_day);
            let predicted = model.bgnbd.expected_purchases(horizon, summary.history);
            let days_since = summary.days_since_last_order(cut);
            let scores = model.quintiles.score(
                days_since,
                summary.orders_count as f64,
                summary.revenue as f64 / 1e6,
            );
            Some(Outcome {
                frequency: summary.history.frequency,
                p_alive: model.bgnbd.p_alive(summary.history),
                segment: segment_of(scores, summary.orders_count),
                predicted,
                actual: days.len() as f64,
                predicted_spend: predicted * model.gamma_gamma.expected_value(summary.spend),
                actual_spend: actual_spend as f64 / 1e6,
            })
        })
        .collect();
    let n = outcomes.len().max(1) as f64;
    let report = Backtest {
        shop_id: shop_id.into(),
        run_at,
        as_of,
        horizon_days: horizon_days as i32,
        customers: record.customers,
        repeat_customers: record.repeat_customers,
        r: record.r,
        alpha: record.alpha,
        a: record.a,
        b: record.b,
        p: record.p,
        q: record.q,
        v: record.v,
        predicted_purchases: outcomes.iter().map(|o| o.predicted).sum(),
        actual_purchases: outcomes.iter().map(|o| o.actual).sum(),
        predicted_spend: outcomes.iter().map(|o| o.predicted_spend).sum(),
        actual_spend: outcomes.iter().map(|o| o.actual_spend).sum(),
        mean_absolute_error: outcomes
            .iter()
            .map(|o| (o.predicted - o.actual).abs())
            .sum::<f64>()
            / n,
        deciles: deciles(&outcomes),
        by_frequency: by_frequency(&outcomes),
        segments: segments(&outcomes),
        p_alive_auc: auc(&outcomes
            .iter()
            .filter(|o| o.frequency > 0.0)
            .map(|o| (o.p_alive, o.actual > 0.0))
            .collect::<Vec<_>>()),
        expected_purchases_auc: auc(&outcomes
            .iter()
            .map(|o| (o.predicted, o.actual > 0.0))
            .collect::<Vec<_>>()),
    };
    (report, outcomes)
}

fn group(name: String, members: &[&Outcome]) -> CalibrationGroup {
    let n = members.len().max(1) as f64;
    CalibrationGroup {
        group: name,
        customers: members.len() as i64,
        predicted: members.iter().map(|o| o.predicted).sum::<f64>() / n,
        actual: members.iter().map(|o| o.actual).sum::<f64>() / n,
    }
}

/// Ten groups of equal size by prediction, lowest first.
pub fn deciles(outcomes: &[Outcome]) -> Vec<CalibrationGroup> {
    let mut sorted: Vec<&Outcome> = outcomes.iter().collect();
    sorted.sort_by(|a, b| a.predicted.total_cmp(&b.predicted));
    let n = sorted.len();
    (0..10)
        .map(|d| {
            let (from, to) = (d * n / 10, (d + 1) * n / 10);
            group((d + 1).to_string(), &sorted[from..to])
        })
        .filter(|g| g.customers > 0)
        .collect()
}

/// Groups by repeat purchases before the cut-off: 0 to 6 and 7+.
pub fn by_frequency(outcomes: &[Outcome]) -> Vec<CalibrationGroup> {
    (0..=7)
        .map(|f| {
            let members: Vec<&Outcome> = outcomes
                .iter()
                .filter(|o| {
                    let x = o.frequency as i64;
                    if f == 7 {
                        x >= 7
                    } else {
                        x == f
                    }
                })
                .collect();
            group(if f == 7 { "7+".into() } else { f.to_string() }, &members)
        })
        .filter(|g| g.customers > 0)
        .collect()
}

fn segments(outcomes: &[Outcome]) -> Vec<SegmentReturn> {
    woostream_core::contract::enriched::Segment::ALL
        .into_iter()
        .map(|s| {
            let members = outcomes.iter().filter(|o| o.segment == s);
            SegmentReturn {
                segment: s.name().into(),
                customers: members.clone().count() as i64,
                returned: members.filter(|o| o.actual > 0.0).count() as i64,
            }
        })
        .filter(|s| s.customers > 0)
        .collect()
}

/// The probability that a customer who came back (`true`) scored higher than one who did not
/// (ties count half): the Mann-Whitney statistic, through ranks.
pub fn auc(scored: &[(f64, bool)]) -> f64 {
    let mut v: Vec<(f64, bool)> = scored.to_vec();
    let positives = v.iter().filter(|x| x.1).count() as f64;
    let negatives = v.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.5;
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        // Tied values share the mean of their ranks (1-based).
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * v[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

#[cfg(test)]
mod tests {
    use super::*;
    use woostream_core::contract::enriched::Segment;

    fn outcome(p_alive: f64, predicted: f64, actual: f64, frequency: f64) -> Outcome {
        Outcome {
            frequency,
            p_alive,
            segment: Segment::Champions,
            predicted,
            actual,
            predicted_spend: 0.0,
            actual_spend: 0.0,
        }
    }

    #[test]
    fn auc_is_one_for_a_perfect_ranking_a_half_for_ties_and_zero_reversed() {
        assert_eq!(auc(&[(0.9, true), (0.1, false)]), 1.0);
        assert_eq!(auc(&[(0.5, true), (0.5, false)]), 0.5);
        assert_eq!(auc(&[(0.1, true), (0.9, false)]), 0.0);
        assert_eq!(auc(&[(0.2, true), (0.6, true), (0.4, false)]), 0.5);
    }

    #[test]
    fn deciles_and_frequency_groups_average_their_members() {
        let outcomes: Vec<Outcome> = (0..20)
            .map(|i| outcome(0.5, i as f64, (i % 2) as f64, (i % 9) as f64))
            .collect();
        let d = deciles(&outcomes);
        assert_eq!(d.len(), 10);
        assert_eq!(d[0].customers, 2);
        assert_eq!(d[0].predicted, 0.5);
        assert_eq!(d[9].predicted, 18.5);
        let f = by_frequency(&outcomes);
        assert_eq!(f.last().unwrap().group, "7+");
        assert_eq!(
            f.last().unwrap().customers,
            4,
            "frequencies 7 and 8, twice each"
        );
    }
}
