//! `[enricher]`: how customers are scored and what the enricher publishes.

use serde::{Deserialize, Serialize};

/// When the enricher publishes in Kafka transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transactions {
    /// Use them when the broker supports them (real Kafka); otherwise rely on ids and versions.
    Auto,
    /// Require them: refuse to start on a broker without transactions.
    On,
    Off,
}

/// Which "now" scores and fits refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    /// The newest event time seen (an order's date_modified): a replay, a backfill or a
    /// backtest scores and fits against the same "today" the shop had then.
    Stream,
    /// The wall clock: a shop with long quiet spells sees recency grow while nothing arrives.
    Wall,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EnricherConfig {
    /// Consumer group of the enrichers (they share the partitions of the input topics).
    pub group_id: String,
    /// This instance's stable name, for its transactional id; default: $HOSTNAME.
    pub instance_id: Option<String>,
    /// Join the group as a static member under the instance's stable name (KIP-345): a pod
    /// restarted within the session timeout gets its partitions back without a rebalance.
    /// The chart turns it on (the StatefulSet gives each pod its ordinal name); off by default
    /// because two processes with one name fence each other, and because a broker that never
    /// expires a static member (Tansu 0.6) would strand a dead instance's partitions.
    pub static_membership: bool,
    /// How long the group waits for a silent instance before giving its partitions away.
    pub session_timeout_ms: u64,
    /// Whether outputs and input offsets are committed in Kafka transactions.
    pub transactions: Transactions,
    /// How often processed input is committed (and a transaction ends).
    pub commit_interval_ms: u64,
    /// A quiet input this long is committed at once instead of at the next interval, so the
    /// end of a burst becomes durable progress as soon as its outputs are acknowledged.
    pub idle_commit_ms: u64,
    /// How often the enricher that owns partition 0 refits the model; 0 turns refitting off.
    pub refit_interval_secs: u64,
    /// Months of CLV in the profile.
    pub clv_months: u32,
    /// Monthly discount rate of the CLV (0.01 = 1 % a month).
    pub monthly_discount_rate: f64,
    /// Share of customers that are not VIP: 0.95 makes the top 5 % by CLV VIPs.
    pub vip_quantile: f64,
    /// High-value order: an amount ("500.00") or a percentile of the shop's order values ("p95").
    pub high_value_order: String,
    /// Stock level at or below which a product is low, when WooCommerce gives none.
    pub default_low_stock: i64,
    /// Reviews with at most this many stars are negative.
    pub negative_review_max_rating: i32,
    /// Mean order value assumed by the Gamma-Gamma prior until a shop has a fitted model.
    pub prior_order_value: f64,
    /// Customers with a repeat purchase needed before the model is fitted rather than prior.
    pub min_repeat_customers: u64,
    /// Orders a shop's own thresholds (the high-value level, the VIP threshold) are learned
    /// from before they are used; until then neither alert fires, and the first model is
    /// fitted as soon as this many orders were processed instead of at the next refit.
    pub threshold_min_orders: u64,
    /// What "now" is for scoring and fitting.
    pub clock: Clock,
    /// Customers who must have bought a product on two or more days before its repurchase
    /// interval is learned (and replenishment_due can fire for it).
    pub repurchase_min_customers: u32,
    /// How far past the interval a customer is due: 0.2 = 20 % later than the shop's median.
    pub replenishment_margin: f64,
    /// Customers rescored per second when a new model arrives (applied at once, at this rate,
    /// so a refit never stalls the orders behind it).
    pub rescore_per_second: u32,
}

impl Default for EnricherConfig {
    fn default() -> Self {
        EnricherConfig {
            group_id: "woostream-enricher".into(),
            instance_id: None,
            static_membership: false,
            session_timeout_ms: 10_000,
            transactions: Transactions::Auto,
            commit_interval_ms: 500,
            idle_commit_ms: 10,
            refit_interval_secs: 3600,
            clv_months: 12,
            monthly_discount_rate: 0.01,
            vip_quantile: 0.95,
            high_value_order: "p95".into(),
            default_low_stock: 5,
            negative_review_max_rating: 2,
            prior_order_value: 50.0,
            min_repeat_customers: 20,
            threshold_min_orders: 200,
            clock: Clock::Stream,
            repurchase_min_customers: 5,
            replenishment_margin: 0.2,
            rescore_per_second: 5_000,
        }
    }
}

/// A high-value order threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HighValueOrder {
    Amount(rust_decimal::Decimal),
    /// Percentile (0–100) of the shop's order values, from the fitted model.
    Percentile(f64),
}

impl EnricherConfig {
    pub fn high_value_order(&self) -> Result<HighValueOrder, String> {
        let s = self.high_value_order.trim();
        if let Some(p) = s.strip_prefix('p') {
            return match p.parse::<f64>() {
                Ok(v) if v == 95.0 => Ok(HighValueOrder::Percentile(v)),
                _ => Err("expected an amount such as \"500.00\" or \"p95\" (the shop's 95th percentile order value)".into()),
            };
        }
        match s.parse::<rust_decimal::Decimal>() {
            Ok(d) if d > rust_decimal::Decimal::ZERO => Ok(HighValueOrder::Amount(d)),
            _ => Err("expected an amount such as \"500.00\" or \"p95\" (the shop's 95th percentile order value)".into()),
        }
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let at = |k: &str| format!("enricher.{k}");
        self.high_value_order()
            .map_err(|m| (at("high_value_order"), m))?;
        if !(self.vip_quantile > 0.0 && self.vip_quantile < 1.0) {
            return Err((
                at("vip_quantile"),
                "expected a share between 0 and 1, e.g. 0.95".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.monthly_discount_rate) {
            return Err((
                at("monthly_discount_rate"),
                "expected a monthly rate from 0 to 1, e.g. 0.01".into(),
            ));
        }
        if self.clv_months == 0 || self.clv_months > 120 {
            return Err((at("clv_months"), "expected 1 to 120 months".into()));
        }
        if self.commit_interval_ms == 0 {
            return Err((at("commit_interval_ms"), "expected at least 1 ms".into()));
        }
        if self.prior_order_value.is_nan() || self.prior_order_value <= 0.0 {
            return Err((at("prior_order_value"), "expected a positive amount".into()));
        }
        if !(0..=5).contains(&self.negative_review_max_rating) {
            return Err((
                at("negative_review_max_rating"),
                "expected 0 to 5 stars".into(),
            ));
        }
        if !(0.0..=10.0).contains(&self.replenishment_margin) {
            return Err((
                at("replenishment_margin"),
                "expected a share from 0 to 10, e.g. 0.2 for 20 % past the interval".into(),
            ));
        }
        if self.repurchase_min_customers < 2 {
            return Err((
                at("repurchase_min_customers"),
                "expected at least 2 customers".into(),
            ));
        }
        if self.rescore_per_second == 0 {
            return Err((at("rescore_per_second"), "expected at least 1".into()));
        }
        Ok(())
    }
}
