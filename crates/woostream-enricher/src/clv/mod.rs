//! Customer lifetime value: BG/NBD for how often and how long, Gamma-Gamma for how much.

pub mod bgnbd;
pub mod fit;
pub mod gamma_gamma;

pub use bgnbd::{BgNbd, History, Sample};
pub use fit::{fit_bgnbd, fit_gamma_gamma, FitError, FitReport};
pub use gamma_gamma::{GammaGamma, Spend};

/// Discounted value of a customer's expected purchases over the next `months` months, as
/// `lifetimes.GammaGammaFitter.customer_lifetime_value` computes it: month by month, the
/// expected purchases in that month times the expected transaction value, discounted by
/// `(1 + monthly_discount)^month`. `units_per_month` is the number of time units in a month
/// (30 for days, as `lifetimes` uses).
pub fn lifetime_value(
    model: &BgNbd,
    spend_model: &GammaGamma,
    history: History,
    spend: Spend,
    months: u32,
    monthly_discount: f64,
    units_per_month: f64,
) -> f64 {
    let value = spend_model.expected_value(spend);
    let mut total = 0.0;
    let mut before = 0.0;
    for month in 1..=months {
        let t = month as f64 * units_per_month;
        let cumulative = model.expected_purchases(t, history);
        total += value * (cumulative - before) / (1.0 + monthly_discount).powi(month as i32);
        before = cumulative;
    }
    if total.is_finite() {
        total.max(0.0)
    } else {
        0.0
    }
}
