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
    let cumulative = monthly_purchases(model, history, months, units_per_month);
    lifetime_value_of(
        &cumulative,
        spend_model.expected_value(spend),
        monthly_discount,
    )
}

/// Expected purchases by the end of each month `1..=months` (the cumulative counts the
/// lifetime value is made of; month 1 and 3 are also the 30- and 90-day figures).
pub fn monthly_purchases(
    model: &BgNbd,
    history: History,
    months: u32,
    units_per_month: f64,
) -> Vec<f64> {
    let ts: Vec<f64> = (1..=months)
        .map(|month| month as f64 * units_per_month)
        .collect();
    let mut out = vec![0.0; ts.len()];
    model.expected_purchases_by(&ts, history, &mut out);
    out
}

/// The discounted value of the purchases in `cumulative` (by the end of month 1, 2, …) at
/// `value` each.
pub fn lifetime_value_of(cumulative: &[f64], value: f64, monthly_discount: f64) -> f64 {
    let mut total = 0.0;
    let mut before = 0.0;
    for (month, cumulative) in (1..).zip(cumulative) {
        total += value * (cumulative - before) / (1.0 + monthly_discount).powi(month);
        before = *cumulative;
    }
    if total.is_finite() {
        total.max(0.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scoring reads the 30- and 90-day figures off the CLV's monthly series and cuts the
    /// series to the configured months: exactly what computing each on its own gives.
    #[test]
    fn the_monthly_series_gives_the_same_figures_as_computing_each_alone() {
        let bg = BgNbd {
            r: 0.243,
            alpha: 30.9,
            a: 0.793,
            b: 2.426,
        };
        let gg = GammaGamma {
            p: 6.25,
            q: 3.74,
            v: 15.44,
        };
        let spend = Spend {
            frequency: 2.0,
            mean_value: 40.0,
        };
        for history in [
            History {
                frequency: 0.0,
                recency: 0.0,
                age: 3.0,
            },
            History {
                frequency: 4.0,
                recency: 200.0,
                age: 250.0,
            },
        ] {
            let monthly = monthly_purchases(&bg, history, 12, 30.0);
            assert_eq!(monthly[0], bg.expected_purchases(30.0, history));
            assert_eq!(monthly[2], bg.expected_purchases(90.0, history));
            for months in [0u32, 1, 3, 12] {
                assert_eq!(
                    lifetime_value_of(&monthly[..months as usize], gg.expected_value(spend), 0.01),
                    lifetime_value(&bg, &gg, history, spend, months, 0.01, 30.0),
                    "{months} months"
                );
            }
        }
    }
}
