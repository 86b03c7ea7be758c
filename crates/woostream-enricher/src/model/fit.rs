//! Fitting a shop's model from its customer profiles: BG/NBD and Gamma-Gamma by maximum
//! likelihood, RFM quintile boundaries, the VIP threshold and the high-value order level.
//! Pure: the profiles in, the model record out.

use std::time::Instant;

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use woostream_core::config::EnricherConfig;

use woostream_core::contract::enriched::{CustomerProfile, RepurchaseInterval, ShopModel};

use crate::clv::{self, Sample};
use crate::customer::{self, summarise, CustomerState, Summary};
use crate::model::{Model, MAX_DROPOUT_SHAPE};
use crate::rfm::Quintiles;
use crate::taste::median;

/// The customers' states as they were at `as_of`: orders created later left out (each
/// order with the newest status known; the ledger keeps no older ones).
pub fn states_as_of(profiles: &[&CustomerProfile], as_of_ms: i64) -> Vec<CustomerState> {
    profiles
        .iter()
        .map(|p| {
            let mut state = customer::from_profile(p);
            state.orders.retain(|o| o.created_ms <= as_of_ms);
            state
        })
        .filter(|s| !s.orders.is_empty())
        .collect()
}

/// The "now" a fit of these profiles refers to on the stream clock: the newest event time
/// among them.
pub fn stream_time(profiles: &[&CustomerProfile]) -> Option<DateTime<Utc>> {
    profiles.iter().map(|p| p.as_of).max()
}

/// Fits one shop's model from its customers' profiles as they were at `as_of` (orders
/// created later are left out); `fitted_at` is the wall-clock time of the fit and the model's
/// version. Parts that cannot be fitted yet (too few repeat customers, or an optimiser
/// failure) keep the priors, and the record says so; the fit never refuses a small shop.
pub fn fit_shop(
    shop_id: &str,
    profiles: &[&CustomerProfile],
    as_of: DateTime<Utc>,
    fitted_at: DateTime<Utc>,
    config: &EnricherConfig,
) -> ShopModel {
    let states = states_as_of(profiles, as_of.timestamp_millis());
    let mut record = fit_states(shop_id, &states, as_of, fitted_at, config);
    record.repurchase_intervals = repurchase_intervals(
        &states,
        config.repurchase_min_customers,
        &names_in(profiles),
    );
    record
}

/// Product names as the profiles carry them (the catalogue's, when the enricher knew them).
fn names_in(profiles: &[&CustomerProfile]) -> HashMap<i64, String> {
    let mut names = HashMap::new();
    for p in profiles {
        let listed = p
            .top_products
            .iter()
            .chain(&p.frequent_products)
            .map(|e| (e.id, &e.name))
            .chain(p.last_products.iter().map(|e| (e.product_id, &e.name)));
        for (id, name) in listed {
            if let Some(n) = name {
                names.entry(id).or_insert_with(|| n.clone());
            }
        }
    }
    names
}

/// Products at most listed in a model's repurchase intervals.
pub const MAX_REPURCHASE_PRODUCTS: usize = 200;

/// Per product, the median over customers of each customer's median days between the
/// purchase days of that product; only products that at least `min_customers` customers
/// bought on two or more days. One value per customer, so a single heavy buyer does not set
/// a product's rhythm.
pub fn repurchase_intervals(
    states: &[CustomerState],
    min_customers: u32,
    names: &HashMap<i64, String>,
) -> Vec<RepurchaseInterval> {
    let mut per_product: HashMap<i64, Vec<f64>> = HashMap::new();
    for state in states {
        let mut days: HashMap<i64, Vec<i64>> = HashMap::new();
        for o in state.orders.iter().filter(|o| o.counted()) {
            for item in o.items.iter() {
                days.entry(item.product_id)
                    .or_default()
                    .push(o.created_ms.div_euclid(customer::DAY_MS));
            }
        }
        for (product, mut d) in days {
            d.sort_unstable();
            d.dedup();
            let mut gaps: Vec<f64> = d.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
            if let Some(m) = median(&mut gaps) {
                per_product.entry(product).or_default().push(m);
            }
        }
    }
    let mut out: Vec<RepurchaseInterval> = per_product
        .into_iter()
        .filter(|(_, v)| v.len() >= min_customers as usize)
        .filter_map(|(product_id, mut v)| {
            Some(RepurchaseInterval {
                product_id,
                name: names.get(&product_id).cloned(),
                customers: v.len() as i32,
                median_days: median(&mut v)?,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.customers
            .cmp(&a.customers)
            .then(a.product_id.cmp(&b.product_id))
    });
    out.truncate(MAX_REPURCHASE_PRODUCTS);
    out
}

/// Fits a model from customers' states as of `as_of`.
pub fn fit_states(
    shop_id: &str,
    states: &[CustomerState],
    as_of: DateTime<Utc>,
    fitted_at: DateTime<Utc>,
    config: &EnricherConfig,
) -> ShopModel {
    let started = Instant::now();
    let now_ms = as_of.timestamp_millis();
    let prior = Model::prior(config);
    let mut order_values: Vec<f64> = Vec::new();
    let summaries: Vec<Summary> = states
        .iter()
        .map(|state| {
            order_values.extend(
                state
                    .orders
                    .iter()
                    .filter(|o| o.counted())
                    .map(|o| o.total as f64 / 1e6),
            );
            summarise(state, now_ms)
        })
        .filter(|s| s.orders_count > 0)
        .collect();
    let repeat = summaries
        .iter()
        .filter(|s| s.history.frequency > 0.0)
        .count() as u64;
    let enough = repeat >= config.min_repeat_customers.max(1);

    let sample = Sample::new(summaries.iter().map(|s| s.history));
    let bgnbd = if enough {
        match clv::fit_bgnbd(&sample) {
            Ok((params, _)) if params.a <= MAX_DROPOUT_SHAPE && params.b <= MAX_DROPOUT_SHAPE => {
                Some(params)
            }
            Ok((params, _)) => {
                tracing::warn!(shop = shop_id, a = params.a, b = params.b, "BG/NBD fit ran away (the shop's history does not tell dropout apart yet); keeping the priors.");
                None
            }
            Err(e) => {
                tracing::warn!(shop = shop_id, error = %e, "BG/NBD fit failed; keeping the priors.");
                None
            }
        }
    } else {
        None
    };
    let spends: Vec<clv::Spend> = summaries.iter().map(|s| s.spend).collect();
    // Gamma-Gamma needs q > 1 for a finite mean spend.
    let gamma_gamma = if enough {
        match clv::fit_gamma_gamma(&spends) {
            Ok((params, _)) if params.q > 1.0 => Some(params),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(shop = shop_id, error = %e, "Gamma-Gamma fit failed; keeping the priors.");
                None
            }
        }
    } else {
        None
    };
    let quintiles = Quintiles::from_customers(summaries.iter().map(|s| {
        (
            s.days_since_last_order(now_ms),
            s.orders_count as f64,
            s.revenue as f64 / 1e6,
        )
    }))
    .unwrap_or_else(Quintiles::prior);
    let mut model = Model {
        version: fitted_at.timestamp_millis(),
        bgnbd: bgnbd.unwrap_or(prior.bgnbd),
        gamma_gamma: gamma_gamma.unwrap_or(prior.gamma_gamma),
        quintiles,
        vip_clv_threshold: None,
        order_value_p95: None,
        repurchase_days: Default::default(),
    };
    let mut clvs: Vec<f64> = summaries
        .iter()
        .map(|s| {
            clv::lifetime_value(
                &model.bgnbd,
                &model.gamma_gamma,
                s.history,
                s.spend,
                config.clv_months,
                config.monthly_discount_rate,
                30.0,
            )
        })
        .collect();
    // Thresholds relative to the shop only once enough of its orders informed them; VIPs
    // (the top CLVs) only once the purchase process is the shop's own, not CDNOW's: ranking
    // customers by a prior's CLV would crown whoever spent most in one order.
    if order_values.len() as u64 >= config.threshold_min_orders.max(1) {
        model.order_value_p95 = quantile(&mut order_values, 0.95);
        if bgnbd.is_some() {
            // Above zero, so that a shop of one-off buyers does not call everyone a VIP.
            model.vip_clv_threshold =
                quantile(&mut clvs, config.vip_quantile).map(|t| t.max(f64::MIN_POSITIVE));
        }
    }
    let mut record = model.to_record(
        shop_id,
        fitted_at,
        summaries.len() as i64,
        repeat as i64,
        bgnbd.is_some(),
        gamma_gamma.is_some(),
        started.elapsed().as_secs_f64(),
    );
    record.as_of = Some(as_of);
    record
}

/// The value at rank floor(q * (n - 1)).
fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[((values.len() - 1) as f64 * q).floor() as usize])
}
