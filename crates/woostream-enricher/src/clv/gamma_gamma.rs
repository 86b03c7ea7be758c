//! Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV"): the expected value of a
//! customer's future transactions, shrunk from their own average towards the population's.

use serde::{Deserialize, Serialize};
use statrs::function::gamma::{digamma, ln_gamma};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    /// The paper's gamma (`v` in `lifetimes`).
    pub v: f64,
}

/// A repeat customer's spend: number of repeat transactions and their mean value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spend {
    pub frequency: f64,
    pub mean_value: f64,
}

impl GammaGamma {
    pub fn as_array(&self) -> [f64; 3] {
        [self.p, self.q, self.v]
    }

    /// Expected value of one future transaction.
    pub fn expected_value(&self, spend: Spend) -> f64 {
        let GammaGamma { p, q, v } = *self;
        let population_mean = v * p / (q - 1.0);
        if spend.frequency <= 0.0 || spend.mean_value.is_nan() || spend.mean_value <= 0.0 {
            return population_mean;
        }
        let weight = p * spend.frequency / (p * spend.frequency + q - 1.0);
        (1.0 - weight) * population_mean + weight * spend.mean_value
    }

    /// Mean log-likelihood of repeat customers' spend, and its gradient in log-parameters.
    pub fn log_likelihood(&self, spends: &[Spend]) -> (f64, [f64; 3]) {
        self.log_likelihood_prepared(&prepare(spends))
    }

    /// [`GammaGamma::log_likelihood`] over spends prepared once for many evaluations.
    pub fn log_likelihood_prepared(&self, spends: &[PreparedSpend]) -> (f64, [f64; 3]) {
        let GammaGamma { p, q, v } = *self;
        let (lg_q, psi_q, ln_v) = (ln_gamma(q), digamma(q), v.ln());
        let mut ll = 0.0;
        let mut g = [0.0f64; 3];
        // Spends arrive sorted by frequency; the Gamma terms depend on it alone.
        let mut cached_x = f64::NAN;
        let (mut lg_pxq, mut lg_px, mut psi_pxq, mut psi_px) = (0.0, 0.0, 0.0, 0.0);
        for s in spends {
            let (x, m) = (s.frequency, s.mean_value);
            if x != cached_x {
                cached_x = x;
                lg_pxq = ln_gamma(p * x + q);
                lg_px = ln_gamma(p * x);
                psi_pxq = digamma(p * x + q);
                psi_px = digamma(p * x);
            }
            let ln_xmv = (x * m + v).ln();
            ll += lg_pxq - lg_px - lg_q + q * ln_v + (p * x - 1.0) * s.ln_m + p * x * s.ln_x
                - (p * x + q) * ln_xmv;
            g[0] += x * (psi_pxq - psi_px + s.ln_m + s.ln_x - ln_xmv);
            g[1] += psi_pxq - psi_q + ln_v - ln_xmv;
            g[2] += q / v - (p * x + q) / (x * m + v);
        }
        let n = spends.len().max(1) as f64;
        let params = self.as_array();
        (ll / n, std::array::from_fn(|i| g[i] * params[i] / n))
    }
}

/// A spend with the logarithms that do not depend on the parameters.
#[derive(Debug, Clone, Copy)]
pub struct PreparedSpend {
    frequency: f64,
    mean_value: f64,
    ln_m: f64,
    ln_x: f64,
}

pub fn prepare(spends: &[Spend]) -> Vec<PreparedSpend> {
    spends
        .iter()
        .map(|s| PreparedSpend {
            frequency: s.frequency,
            mean_value: s.mean_value,
            ln_m: s.mean_value.ln(),
            ln_x: s.frequency.ln(),
        })
        .collect()
}
