//! Fitting a shop's model from its customer profiles: BG/NBD and Gamma-Gamma by maximum
//! likelihood, RFM quintile boundaries, the VIP threshold and the high-value order level.
//! Pure: the profiles in, the model record out.

use std::time::Instant;

use chrono::{DateTime, Utc};
use woostream_core::config::EnricherConfig;
use woostream_core::insights::{CustomerProfile, ShopModel};

use crate::clv::{self, Sample};
use crate::customer::{self, summarise, Summary};
use crate::model::{Model, MAX_DROPOUT_SHAPE};
use crate::rfm::Quintiles;

/// Fits one shop's model from its customers' profiles as of `now`. Parts that cannot be
/// fitted yet (too few repeat customers, or an optimiser failure) keep the priors, and the
/// record says so; the fit never refuses a small shop.
pub fn fit_shop(
    shop_id: &str,
    profiles: &[&CustomerProfile],
    now: DateTime<Utc>,
    config: &EnricherConfig,
) -> ShopModel {
    let started = Instant::now();
    let now_ms = now.timestamp_millis();
    let prior = Model::prior(config);
    let mut order_values: Vec<f64> = Vec::new();
    let summaries: Vec<Summary> = profiles
        .iter()
        .map(|p| {
            let state = customer::from_profile(p);
            order_values.extend(
                state
                    .orders
                    .iter()
                    .filter(|o| o.counted())
                    .map(|o| o.total as f64 / 1e6),
            );
            summarise(&state, now_ms)
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
        version: now_ms,
        bgnbd: bgnbd.unwrap_or(prior.bgnbd),
        gamma_gamma: gamma_gamma.unwrap_or(prior.gamma_gamma),
        quintiles,
        vip_clv_threshold: None,
        order_value_p95: None,
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
    model.to_record(
        shop_id,
        now,
        summaries.len() as i64,
        repeat as i64,
        bgnbd.is_some(),
        gamma_gamma.is_some(),
        started.elapsed().as_secs_f64(),
    )
}

/// The value at rank floor(q * (n - 1)).
fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[((values.len() - 1) as f64 * q).floor() as usize])
}
