//! What the insight page shows, folded from the topics' records: no Kafka here, only the
//! records in and the figures out.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;
use woostream_core::contract::enriched::{Alert, Backtest, CustomerProfile, Segment, ShopModel};
use woostream_core::contract::sink_records::{Delivery, DeliveryOutcome};

const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;

/// Upper bounds of the CLV histogram's bins (the last bin is open).
pub const CLV_BINS: [f64; 9] = [0.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0];
/// Recency bands of the P(alive) grid, in days since the last order (upper bounds).
pub const RECENCY_BANDS: [(i64, &str); 5] = [
    (30, "0-30 d"),
    (90, "31-90 d"),
    (180, "91-180 d"),
    (365, "181-365 d"),
    (i64::MAX, "365+ d"),
];
/// Frequency rows of the P(alive) grid: repeat purchase days 0 to 6, and 7 or more.
pub const FREQUENCY_ROWS: usize = 8;
/// Flow samples kept per topic.
const FLOW_SAMPLES: usize = 60;

/// What the page needs of one customer's newest profile.
#[derive(Clone, Debug)]
struct Customer {
    segment: Option<Segment>,
    clv: f64,
    p_alive: f64,
    /// Days since the last order, as of the profile.
    recency_days: i64,
    /// Repeat purchase days.
    frequency: i64,
    categories: Vec<(String, f64)>,
    version: i64,
}

impl Customer {
    fn of(p: &CustomerProfile) -> Customer {
        let clv = p.clv_12_months.amount().try_into().unwrap_or(0.0);
        Customer {
            segment: (p.orders_count > 0).then_some(p.segment),
            clv,
            p_alive: p.p_alive,
            recency_days: p
                .last_order_at
                .map_or(0, |l| (p.as_of - l).num_milliseconds().max(0) / DAY_MS),
            frequency: i64::from(p.transactions.max(1) - 1),
            categories: p
                .top_categories
                .iter()
                .map(|c| {
                    (
                        c.name
                            .clone()
                            .unwrap_or_else(|| format!("category {}", c.id)),
                        c.revenue.amount().try_into().unwrap_or(0.0),
                    )
                })
                .collect(),
            version: p.version,
        }
    }
}

/// Everything the page has learned from the topics.
#[derive(Default)]
pub struct View {
    customers: HashMap<(String, String), Customer>,
    /// Per stream week (start, ms): customers that entered (+) and left (-) each segment.
    segment_changes: BTreeMap<i64, [i64; 11]>,
    /// (from, to) segment moves, with how many times they happened.
    moves: HashMap<(Segment, Segment), u64>,
    models: BTreeMap<String, ShopModel>,
    backtests: BTreeMap<String, Backtest>,
    /// (sink, outcome) → deliveries.
    deliveries: BTreeMap<(String, String), u64>,
    /// The newest refusals: (sink, destination, reason).
    refusals: VecDeque<(String, String, String)>,
    /// Alert records by kind. A replayed alert counts again: remembering every id to drop
    /// repeats would grow without bound, and repeats are rare (a crash's replay).
    alerts: BTreeMap<&'static str, u64>,
    /// Per topic: (wall ms, end offset summed over partitions).
    flow: BTreeMap<String, VecDeque<(i64, i64)>>,
}

fn index(s: Segment) -> usize {
    Segment::ALL
        .iter()
        .position(|x| *x == s)
        .expect("every segment is listed")
}

impl View {
    /// A profile version (None: the customer was erased).
    pub fn on_profile(&mut self, shop_id: &str, customer: &str, profile: Option<&CustomerProfile>) {
        let key = (shop_id.to_string(), customer.to_string());
        let before = self.customers.get(&key).map(|c| (c.segment, c.version));
        let week = |ms: i64| ms.div_euclid(WEEK_MS) * WEEK_MS;
        match profile {
            Some(p) => {
                if before.is_some_and(|(_, v)| v >= p.version) {
                    return;
                }
                let now = Customer::of(p);
                let at = week(p.as_of.timestamp_millis());
                let old = before.and_then(|(s, _)| s);
                if old != now.segment {
                    let changes = self.segment_changes.entry(at).or_default();
                    if let Some(o) = old {
                        changes[index(o)] -= 1;
                    }
                    if let Some(n) = now.segment {
                        changes[index(n)] += 1;
                    }
                    if let (Some(o), Some(n)) = (old, now.segment) {
                        *self.moves.entry((o, n)).or_default() += 1;
                    }
                }
                self.customers.insert(key, now);
            }
            None => {
                if let Some(c) = self.customers.remove(&key) {
                    if let Some(s) = c.segment {
                        // Erased: they leave the counts from the newest week on.
                        let at = self
                            .segment_changes
                            .keys()
                            .next_back()
                            .copied()
                            .unwrap_or(0);
                        self.segment_changes.entry(at).or_default()[index(s)] -= 1;
                    }
                }
            }
        }
    }

    pub fn on_model(&mut self, model: ShopModel) {
        let newer = self
            .models
            .get(&model.shop_id)
            .is_none_or(|m| m.version <= model.version);
        if newer {
            self.models.insert(model.shop_id.clone(), model);
        }
    }

    pub fn on_backtest(&mut self, backtest: Backtest) {
        self.backtests.insert(backtest.shop_id.clone(), backtest);
    }

    pub fn on_delivery(&mut self, d: &Delivery) {
        let outcome = d.outcome.as_str();
        *self
            .deliveries
            .entry((d.sink.clone(), outcome.to_string()))
            .or_default() += 1;
        if d.outcome == DeliveryOutcome::DeadLettered {
            self.refusals.push_front((
                d.sink.clone(),
                d.destination.clone(),
                d.reason.clone().unwrap_or_default(),
            ));
            self.refusals.truncate(10);
        }
    }

    pub fn on_alert(&mut self, alert: &Alert) {
        *self.alerts.entry(alert.kind.as_str()).or_default() += 1;
    }

    /// The end offsets of `topic` (summed over its partitions) at wall time `at_ms`.
    pub fn on_flow(&mut self, topic: &str, at_ms: i64, end: i64) {
        let samples = self.flow.entry(topic.to_string()).or_default();
        samples.push_back((at_ms, end));
        while samples.len() > FLOW_SAMPLES {
            samples.pop_front();
        }
    }

    /// The figures of the page.
    pub fn summary(&self) -> Summary {
        let mut segments = [0u64; 11];
        let mut clv = vec![0u64; CLV_BINS.len()];
        let mut grid = vec![vec![(0.0f64, 0u64); RECENCY_BANDS.len()]; FREQUENCY_ROWS];
        let mut categories: HashMap<&str, (f64, u64)> = HashMap::new();
        for c in self.customers.values() {
            let Some(s) = c.segment else { continue };
            segments[index(s)] += 1;
            let bin = CLV_BINS.iter().rposition(|b| c.clv >= *b).unwrap_or(0);
            clv[bin] += 1;
            let row = (c.frequency as usize).min(FREQUENCY_ROWS - 1);
            let col = RECENCY_BANDS
                .iter()
                .position(|(max, _)| c.recency_days <= *max)
                .unwrap_or(RECENCY_BANDS.len() - 1);
            grid[row][col].0 += c.p_alive;
            grid[row][col].1 += 1;
            for (name, revenue) in &c.categories {
                let e = categories.entry(name).or_default();
                e.0 += revenue;
                e.1 += 1;
            }
        }
        let mut running = [0i64; 11];
        let segments_over_time = self
            .segment_changes
            .iter()
            .map(|(week, changes)| {
                for (r, c) in running.iter_mut().zip(changes) {
                    *r += c;
                }
                SegmentsAt {
                    week_start: chrono::DateTime::from_timestamp_millis(*week)
                        .unwrap_or_default()
                        .format("%Y-%m-%d")
                        .to_string(),
                    counts: running.iter().map(|v| (*v).max(0) as u64).collect(),
                }
            })
            .collect();
        let mut moves: Vec<Move> = self
            .moves
            .iter()
            .map(|((from, to), n)| Move {
                from: from.name(),
                to: to.name(),
                customers: *n,
            })
            .collect();
        moves.sort_by(|a, b| b.customers.cmp(&a.customers).then(a.from.cmp(b.from)));
        moves.truncate(12);
        let mut top_categories: Vec<CategoryFigure> = categories
            .into_iter()
            .map(|(name, (revenue, customers))| CategoryFigure {
                name: name.to_string(),
                revenue: (revenue * 100.0).round() / 100.0,
                customers,
            })
            .collect();
        top_categories.sort_by(|a, b| b.revenue.total_cmp(&a.revenue).then(a.name.cmp(&b.name)));
        top_categories.truncate(10);
        let flow = self
            .flow
            .iter()
            .map(|(topic, samples)| {
                let rate = match (samples.iter().rev().nth(1), samples.back()) {
                    (Some((t0, e0)), Some((t1, e1))) if t1 > t0 => {
                        (e1 - e0).max(0) as f64 * 1000.0 / (t1 - t0) as f64
                    }
                    _ => 0.0,
                };
                TopicFlow {
                    topic: topic.clone(),
                    records: samples.back().map_or(0, |s| s.1),
                    per_second: (rate * 10.0).round() / 10.0,
                    history: samples
                        .iter()
                        .zip(samples.iter().skip(1))
                        .map(|((t0, e0), (t1, e1))| {
                            (e1 - e0).max(0) as f64 * 1000.0 / (t1 - t0).max(1) as f64
                        })
                        .collect(),
                }
            })
            .collect();
        Summary {
            customers: segments.iter().sum(),
            segments: Segment::ALL
                .iter()
                .zip(segments)
                .map(|(s, n)| SegmentFigure {
                    segment: s.name(),
                    customers: n,
                })
                .collect(),
            segment_names: Segment::ALL.iter().map(|s| s.name()).collect(),
            segments_over_time,
            moves,
            clv_histogram: CLV_BINS
                .iter()
                .enumerate()
                .map(|(i, from)| ClvBin {
                    label: match CLV_BINS.get(i + 1) {
                        Some(to) => format!("{from:.0}-{to:.0}"),
                        None => format!("{from:.0}+"),
                    },
                    customers: clv[i],
                })
                .collect(),
            p_alive_grid: grid
                .iter()
                .enumerate()
                .map(|(f, row)| GridRow {
                    frequency: if f == FREQUENCY_ROWS - 1 {
                        format!("{f}+")
                    } else {
                        f.to_string()
                    },
                    cells: row
                        .iter()
                        .map(|(sum, n)| GridCell {
                            customers: *n,
                            mean_p_alive: (*n > 0)
                                .then(|| ((sum / *n as f64) * 1000.0).round() / 1000.0),
                        })
                        .collect(),
                })
                .collect(),
            recency_bands: RECENCY_BANDS.iter().map(|(_, l)| *l).collect(),
            models: self.models.values().cloned().collect(),
            backtests: self.backtests.values().cloned().collect(),
            top_categories,
            flow,
            deliveries: self
                .deliveries
                .iter()
                .map(|((sink, outcome), n)| DeliveryFigure {
                    sink: sink.clone(),
                    outcome: outcome.clone(),
                    deliveries: *n,
                })
                .collect(),
            refusals: self
                .refusals
                .iter()
                .map(|(sink, destination, reason)| Refusal {
                    sink: sink.clone(),
                    destination: destination.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            alerts: self
                .alerts
                .iter()
                .map(|(k, n)| AlertFigure {
                    kind: k,
                    alerts: *n,
                })
                .collect(),
        }
    }
}

/// The figures the page draws (also served as JSON at `/insight/data.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Customers with a counted order.
    pub customers: u64,
    pub segments: Vec<SegmentFigure>,
    pub segment_names: Vec<&'static str>,
    pub segments_over_time: Vec<SegmentsAt>,
    pub moves: Vec<Move>,
    pub clv_histogram: Vec<ClvBin>,
    pub p_alive_grid: Vec<GridRow>,
    pub recency_bands: Vec<&'static str>,
    pub models: Vec<ShopModel>,
    pub backtests: Vec<Backtest>,
    pub top_categories: Vec<CategoryFigure>,
    pub flow: Vec<TopicFlow>,
    pub deliveries: Vec<DeliveryFigure>,
    pub refusals: Vec<Refusal>,
    pub alerts: Vec<AlertFigure>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SegmentFigure {
    pub segment: &'static str,
    pub customers: u64,
}

/// Segment sizes at the end of a stream week, in [`Segment::ALL`] order.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentsAt {
    pub week_start: String,
    pub counts: Vec<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Move {
    pub from: &'static str,
    pub to: &'static str,
    pub customers: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClvBin {
    pub label: String,
    pub customers: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GridRow {
    pub frequency: String,
    pub cells: Vec<GridCell>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GridCell {
    pub customers: u64,
    pub mean_p_alive: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CategoryFigure {
    pub name: String,
    pub revenue: f64,
    /// Customers with it among their top categories.
    pub customers: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TopicFlow {
    pub topic: String,
    /// Records written to the topic so far (end offsets summed).
    pub records: i64,
    pub per_second: f64,
    /// Records per second between consecutive samples.
    pub history: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeliveryFigure {
    pub sink: String,
    pub outcome: String,
    pub deliveries: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    pub sink: String,
    pub destination: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct AlertFigure {
    pub kind: &'static str,
    pub alerts: u64,
}
