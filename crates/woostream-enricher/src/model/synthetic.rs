//! A shop's customers drawn from the purchase process the models assume: BG/NBD for when
//! customers buy and leave, Gamma-Gamma for how much they spend. What the demo's simulated
//! shop and the backtests' known-truth checks draw from.

use rand::Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma};

use crate::clv::{BgNbd, GammaGamma};
use crate::model::{PRIOR_BGNBD, PRIOR_GAMMA_GAMMA_P, PRIOR_GAMMA_GAMMA_Q};

/// The parameters customers are drawn from (rates in days, spend in the shop's currency).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PurchaseProcess {
    pub bgnbd: BgNbd,
    pub gamma_gamma: GammaGamma,
}

impl PurchaseProcess {
    /// CDNOW's estimates (Fader, Hardie & Lee 2005), spend scaled to a mean order of
    /// `mean_order_value`.
    pub fn cdnow_like(mean_order_value: f64) -> PurchaseProcess {
        let (p, q) = (PRIOR_GAMMA_GAMMA_P, PRIOR_GAMMA_GAMMA_Q);
        PurchaseProcess {
            bgnbd: PRIOR_BGNBD,
            gamma_gamma: GammaGamma {
                p,
                q,
                v: mean_order_value * (q - 1.0) / p,
            },
        }
    }
}

/// One drawn customer: the days they bought on and what each purchase was worth.
#[derive(Clone, Debug, PartialEq)]
pub struct DrawnCustomer {
    /// Day of the first purchase (days since the start of the history).
    pub first_day: f64,
    /// (day, value) of every purchase, the first included, in time order.
    pub purchases: Vec<(f64, f64)>,
}

impl PurchaseProcess {
    /// `customers` customers whose first purchases fall uniformly in the first
    /// `acquisition_days`, followed until `end_day`.
    pub fn draw(
        &self,
        customers: usize,
        acquisition_days: f64,
        end_day: f64,
        rng: &mut impl Rng,
    ) -> Vec<DrawnCustomer> {
        let BgNbd { r, alpha, a, b } = self.bgnbd;
        let GammaGamma { p, q, v } = self.gamma_gamma;
        // rand_distr's Gamma takes a scale: the models' rates are inverted.
        let lambdas = Gamma::new(r, 1.0 / alpha).expect("BG/NBD r and alpha are positive");
        let dropouts = Beta::new(a, b).expect("BG/NBD a and b are positive");
        let nus = Gamma::new(q, 1.0 / v).expect("Gamma-Gamma q and v are positive");
        (0..customers)
            .map(|_| {
                let lambda: f64 = lambdas.sample(rng).max(1e-12);
                let dropout: f64 = dropouts.sample(rng);
                let nu: f64 = nus.sample(rng).max(1e-12);
                let values = Gamma::new(p, 1.0 / nu).expect("Gamma-Gamma p is positive");
                let gaps = Exp::new(lambda).expect("a positive rate");
                let first_day = rng.random::<f64>() * acquisition_days;
                let mut purchases = vec![(first_day, values.sample(rng))];
                let mut t = first_day;
                loop {
                    t += gaps.sample(rng);
                    if t > end_day {
                        break;
                    }
                    purchases.push((t, values.sample(rng)));
                    // BG/NBD: after each repeat purchase the customer leaves with
                    // probability p.
                    if rng.random::<f64>() < dropout {
                        break;
                    }
                }
                DrawnCustomer {
                    first_day,
                    purchases,
                }
            })
            .collect()
    }
}
