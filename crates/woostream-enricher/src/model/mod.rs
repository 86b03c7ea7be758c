//! The population model a profile is scored with: fitted per shop by `woostream fit` (or the
//! enricher's periodic refit) and published to the models topic, or the documented priors
//! while a shop has too little history.
//!
//! - this module: the model and its priors;
//! - [`fit`]: fitting a shop's model from its profiles (pure);
//! - [`topic`]: the models topic at the Kafka edge — following it, fitting every shop and
//!   publishing; the parameter estimation itself is [`crate::clv`]'s.

pub mod backtest;
pub mod fit;
pub mod synthetic;
pub mod topic;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use woostream_core::config::EnricherConfig;
use woostream_core::contract::enriched::ShopModel;

use crate::clv::{BgNbd, GammaGamma};
use crate::rfm::Quintiles;

/// BG/NBD prior: the CDNOW estimates of Fader, Hardie & Lee (2005), alpha converted from weeks
/// to days. A shop's first customers are scored as CDNOW's were until a fit is possible.
pub const PRIOR_BGNBD: BgNbd = BgNbd {
    r: 0.243,
    alpha: 4.414 * 7.0,
    a: 0.793,
    b: 2.426,
};
/// Gamma-Gamma prior shape (CDNOW); its scale is set from `enricher.prior_order_value`.
pub const PRIOR_GAMMA_GAMMA_P: f64 = 6.25;
pub const PRIOR_GAMMA_GAMMA_Q: f64 = 3.74;

/// Largest dropout shape (a or b) a model may have. Real shops fit well below 100 (CDNOW:
/// 0.79 and 2.43); beyond this the likelihood is flat in a and b (dropout is the same for
/// everyone), and scoring with such a model needs on the order of `a` series terms per
/// customer and month.
pub const MAX_DROPOUT_SHAPE: f64 = 1e3;

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// 0 for the priors; the fit time in milliseconds otherwise.
    pub version: i64,
    pub bgnbd: BgNbd,
    pub gamma_gamma: GammaGamma,
    pub quintiles: Quintiles,
    /// CLV from which a customer is VIP; none until the shop's own customers informed it.
    pub vip_clv_threshold: Option<f64>,
    /// The 95th percentile order value; none until enough of the shop's orders informed it.
    pub order_value_p95: Option<f64>,
    /// Median days between repurchases, by product: what replenishment is due on.
    pub repurchase_days: Arc<HashMap<i64, f64>>,
}

impl Model {
    /// The priors: CDNOW's purchase process, a spend distribution whose mean is
    /// `prior_order_value`, fixed RFM boundaries. No VIP threshold and no high-value level:
    /// calling a fresh shop's orders "high value" against an assumed mean would fire on most
    /// of them.
    pub fn prior(config: &EnricherConfig) -> Model {
        let mean = config.prior_order_value;
        Model {
            version: 0,
            bgnbd: PRIOR_BGNBD,
            gamma_gamma: GammaGamma {
                p: PRIOR_GAMMA_GAMMA_P,
                q: PRIOR_GAMMA_GAMMA_Q,
                v: mean * (PRIOR_GAMMA_GAMMA_Q - 1.0) / PRIOR_GAMMA_GAMMA_P,
            },
            quintiles: Quintiles::prior(),
            vip_clv_threshold: None,
            order_value_p95: None,
            repurchase_days: Arc::default(),
        }
    }

    pub fn from_record(record: &ShopModel) -> Option<Model> {
        let q = |v: &[f64]| -> Option<[f64; 4]> { v.try_into().ok() };
        let model = Model {
            version: record.version,
            bgnbd: BgNbd {
                r: record.r,
                alpha: record.alpha,
                a: record.a,
                b: record.b,
            },
            gamma_gamma: GammaGamma {
                p: record.p,
                q: record.q,
                v: record.v,
            },
            quintiles: Quintiles {
                recency_days: q(&record.recency_days_quintiles)?,
                frequency: q(&record.frequency_quintiles)?,
                monetary: q(&record.monetary_quintiles)?,
            },
            // 0 in the record: not informed yet.
            vip_clv_threshold: (record.vip_clv_threshold > 0.0).then_some(record.vip_clv_threshold),
            order_value_p95: (record.order_value_p95 > 0.0).then_some(record.order_value_p95),
            repurchase_days: Arc::new(
                record
                    .repurchase_intervals
                    .iter()
                    .filter(|r| r.median_days.is_finite() && r.median_days > 0.0)
                    .map(|r| (r.product_id, r.median_days))
                    .collect(),
            ),
        };
        let params = [
            model.bgnbd.r,
            model.bgnbd.alpha,
            model.bgnbd.a,
            model.bgnbd.b,
            model.gamma_gamma.p,
            model.gamma_gamma.q,
            model.gamma_gamma.v,
        ];
        let dropout_in_range =
            model.bgnbd.a <= MAX_DROPOUT_SHAPE && model.bgnbd.b <= MAX_DROPOUT_SHAPE;
        (dropout_in_range && params.iter().all(|v| v.is_finite() && *v > 0.0)).then_some(model)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn to_record(
        &self,
        shop_id: &str,
        fitted_at: DateTime<Utc>,
        customers: i64,
        repeat_customers: i64,
        bgnbd_fitted: bool,
        gamma_gamma_fitted: bool,
        fit_seconds: f64,
    ) -> ShopModel {
        ShopModel {
            shop_id: shop_id.into(),
            version: self.version,
            fitted_at,
            customers,
            repeat_customers,
            bgnbd_fitted,
            r: self.bgnbd.r,
            alpha: self.bgnbd.alpha,
            a: self.bgnbd.a,
            b: self.bgnbd.b,
            gamma_gamma_fitted,
            p: self.gamma_gamma.p,
            q: self.gamma_gamma.q,
            v: self.gamma_gamma.v,
            recency_days_quintiles: self.quintiles.recency_days.to_vec(),
            frequency_quintiles: self.quintiles.frequency.to_vec(),
            monetary_quintiles: self.quintiles.monetary.to_vec(),
            vip_clv_threshold: self.vip_clv_threshold.unwrap_or(0.0),
            order_value_p95: self.order_value_p95.unwrap_or(0.0),
            fit_seconds,
            as_of: None,
            repurchase_intervals: Vec::new(),
        }
    }
}
