//! BG/NBD (Fader, Hardie & Lee 2005): how often a customer buys, and whether they are still
//! a customer at all. Everything is computed in log space so that extreme histories (hundreds
//! of repeat purchases, then years of silence) give finite numbers instead of NaN or infinity.

use serde::{Deserialize, Serialize};
use statrs::function::gamma::{digamma, ln_gamma};

/// One customer's purchase history as BG/NBD sees it, in one time unit (days in woostream).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct History {
    /// Repeat transactions: distinct purchase days after the first one.
    pub frequency: f64,
    /// Time from the first to the last purchase.
    pub recency: f64,
    /// Time from the first purchase to now (`T` in the paper).
    pub age: f64,
}

/// Population parameters: purchase rates ~ Gamma(r, alpha), dropout probability ~ Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl BgNbd {
    pub fn as_array(&self) -> [f64; 4] {
        [self.r, self.alpha, self.a, self.b]
    }

    /// Probability that a customer with this history has not dropped out (paper eq. 13).
    pub fn p_alive(&self, h: History) -> f64 {
        if h.frequency <= 0.0 {
            return 1.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        let x = h.frequency;
        let log_odds_dead =
            (a / (b + x - 1.0)).ln() + (r + x) * ((alpha + h.age) / (alpha + h.recency)).ln();
        // 1 / (1 + e^z), without overflow for large z.
        (-softplus(log_odds_dead)).exp()
    }

    /// Expected number of purchases in the next `t` time units (paper eq. 10).
    ///
    /// The hypergeometric factor is evaluated after Euler's transformation, which turns
    /// `(1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z)` into `(1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)`:
    /// the first grows like `(1-z)^-x` and overflows for frequent buyers, the second does not
    /// depend on `x` in its leading factor.
    pub fn expected_purchases(&self, t: f64, h: History) -> f64 {
        let mut out = [0.0];
        self.expected_purchases_by(&[t], h, &mut out);
        out[0]
    }

    /// [`BgNbd::expected_purchases`] for several horizons at once (`out[i]` for `ts[i]`), with
    /// the same figures: the hypergeometric sums of one customer differ only in `z`, so each
    /// term's coefficient is computed once for all of them — a CLV's monthly series costs about
    /// what one sum did.
    pub fn expected_purchases_by(&self, ts: &[f64], h: History, out: &mut [f64]) {
        let BgNbd { r, alpha, a, b } = *self;
        // The formula has a removable singularity at a = 1.
        let a = if (a - 1.0).abs() < 1e-9 {
            1.0 + 1e-9
        } else {
            a
        };
        let x = h.frequency;
        let c = a + b + x - 1.0;
        let ln_denominator = if x > 0.0 {
            softplus(
                (a / (b + x - 1.0)).ln() + (r + x) * ((alpha + h.age) / (alpha + h.recency)).ln(),
            )
        } else {
            0.0
        };
        // On the stack: scoring calls this for every customer (13 horizons).
        for (ts, out) in ts.chunks(LANES).zip(out.chunks_mut(LANES)) {
            let mut zs = [0.0; LANES];
            for (z, t) in zs.iter_mut().zip(ts) {
                *z = t / (alpha + h.age + t);
            }
            let mut ln_sums = [0.0; LANES];
            let n = ts.len();
            ln_hyp2f1_by(a + b - 1.0 - r, a - 1.0, c, &zs[..n], &mut ln_sums[..n]);
            for ((t, ln_sum), out) in ts.iter().zip(ln_sums).zip(out.iter_mut()) {
                if *t <= 0.0 {
                    *out = 0.0;
                    continue;
                }
                let ln_one_minus_z = (-t / (alpha + h.age + t)).ln_1p();
                let ln_f = (a - 1.0) * ln_one_minus_z + ln_sum;
                let numerator = c / (a - 1.0) * -ln_f.exp_m1();
                let value = numerator * (-ln_denominator).exp();
                *out = if value.is_finite() && value >= 0.0 {
                    value
                } else {
                    0.0
                };
            }
        }
    }

    /// Mean log-likelihood of a sample and its gradient with respect to the log-parameters.
    /// Large samples are summed on every core, in fixed chunks added up in order, so the
    /// result does not depend on the number of threads.
    pub fn log_likelihood(&self, sample: &Sample) -> (f64, [f64; 4]) {
        let BgNbd { r, alpha, a, b } = *self;
        let ln_alpha = alpha.ln();
        let (psi_r, psi_b, psi_ab) = (digamma(r), digamma(b), digamma(a + b));
        let (lg_r, lg_b, lg_ab) = (ln_gamma(r), ln_gamma(b), ln_gamma(a + b));
        let mut ll = 0.0;
        let mut g = [0.0f64; 4];
        let mut chunks = Vec::new();
        for (i, group) in sample.groups.iter().enumerate() {
            let x = group.frequency;
            let n = group.customers;
            // Terms that depend on x only, once per distinct frequency.
            ll += n
                * (ln_gamma(r + x) - lg_r + r * ln_alpha + lg_ab + ln_gamma(b + x)
                    - lg_b
                    - ln_gamma(a + b + x));
            let psi_rx = digamma(r + x);
            let psi_abx = digamma(a + b + x);
            g[0] += n * (psi_rx - psi_r + ln_alpha);
            g[1] += n * r / alpha;
            g[2] += n * (psi_ab - psi_abx);
            g[3] += n * (psi_ab + digamma(b + x) - psi_b - psi_abx);
            let terms = group.count.len();
            chunks.extend(
                (0..terms)
                    .step_by(CHUNK)
                    .map(|from| (i, from..(from + CHUNK).min(terms))),
            );
        }
        let ages: Vec<(f64, f64)> = sample
            .ages
            .iter()
            .map(|t| ((alpha + t).ln(), 1.0 / (alpha + t)))
            .collect();
        let parts: Vec<(f64, [f64; 4])> = if sample.terms() >= PARALLEL_FROM {
            use rayon::prelude::*;
            chunks
                .par_iter()
                .map(|(i, range)| self.customer_terms(&sample.groups[*i], range.clone(), &ages))
                .collect()
        } else {
            chunks
                .iter()
                .map(|(i, range)| self.customer_terms(&sample.groups[*i], range.clone(), &ages))
                .collect()
        };
        for (part_ll, part_g) in parts {
            ll += part_ll;
            for (gi, pi) in g.iter_mut().zip(part_g) {
                *gi += pi;
            }
        }
        let total = sample.len as f64;
        let params = self.as_array();
        let grad = std::array::from_fn(|i| g[i] * params[i] / total);
        (ll / total, grad)
    }

    /// The per-customer terms of `range` of one frequency group.
    fn customer_terms(
        &self,
        group: &FrequencyGroup,
        range: std::ops::Range<usize>,
        ages: &[(f64, f64)],
    ) -> (f64, [f64; 4]) {
        let BgNbd { r, alpha, a, b } = *self;
        let x = group.frequency;
        let ln_a_term = a.ln() - (b + x - 1.0).ln();
        let mut ll = 0.0;
        let mut g = [0.0f64; 4];
        let terms = group.recency[range.clone()]
            .iter()
            .zip(&group.age_at[range.clone()])
            .zip(&group.count[range]);
        for ((&recency, &age_at), &k) in terms {
            let (ln_alpha_t, inv_alpha_t) = ages[age_at as usize];
            let a3 = -(r + x) * ln_alpha_t;
            if x > 0.0 {
                let ln_alpha_tx = (alpha + recency).ln();
                let a4 = ln_a_term - (r + x) * ln_alpha_tx;
                // ln(e^a3 + e^a4) = max + ln(1 + e^-|a3 - a4|): one exp and one ln_1p, and
                // the same exp gives both weights.
                let d = a4 - a3;
                let e = (-d.abs()).exp();
                ll += k * (a3.max(a4) + e.ln_1p());
                let inv = k / (1.0 + e);
                let (w3, w4) = if d > 0.0 {
                    (e * inv, inv)
                } else {
                    (inv, e * inv)
                };
                g[0] -= w3 * ln_alpha_t + w4 * ln_alpha_tx;
                g[1] -= (r + x) * (w3 * inv_alpha_t + w4 / (alpha + recency));
                g[2] += w4 / a;
                g[3] -= w4 / (b + x - 1.0);
            } else {
                ll += k * a3;
                g[0] -= k * ln_alpha_t;
                g[1] -= k * (r + x) * inv_alpha_t;
            }
        }
        (ll, g)
    }
}

/// Terms summed together; also the unit of parallel work.
const CHUNK: usize = 16_384;
/// Below this many terms one core is faster than spreading the work.
const PARALLEL_FROM: usize = 65_536;

/// Histories grouped by frequency, so that the Gamma-function terms are computed once per
/// distinct frequency rather than once per customer.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    groups: Vec<FrequencyGroup>,
    len: usize,
    max_age: f64,
    /// Distinct ages, so that each evaluation takes ln(alpha + T) once per age, not once per
    /// term (customers who started on the same day share it).
    ages: Vec<f64>,
}

#[derive(Debug, Clone)]
struct FrequencyGroup {
    frequency: f64,
    /// Customers of this group, as many as have each distinct (recency, age).
    customers: f64,
    recency: Vec<f64>,
    age: Vec<f64>,
    /// Index of each term's age in [`Sample::ages`].
    age_at: Vec<u32>,
    /// How many customers share each (recency, age): one-time buyers who started on the same
    /// day are one term, which in a real shop folds about half the customers into a few
    /// hundred terms.
    count: Vec<f64>,
}

impl Sample {
    pub fn new(histories: impl IntoIterator<Item = History>) -> Sample {
        // Sorted, equal histories are neighbours: each distinct one becomes a counted term.
        let mut all: Vec<History> = histories.into_iter().collect();
        all.sort_unstable_by(|a, b| {
            a.frequency
                .total_cmp(&b.frequency)
                .then(a.age.total_cmp(&b.age))
                .then(a.recency.total_cmp(&b.recency))
        });
        let mut sample = Sample {
            len: all.len(),
            ..Sample::default()
        };
        for h in all {
            sample.max_age = sample.max_age.max(h.age);
            let same_group = sample
                .groups
                .last()
                .is_some_and(|g: &FrequencyGroup| g.frequency.to_bits() == h.frequency.to_bits());
            if !same_group {
                sample.groups.push(FrequencyGroup {
                    frequency: h.frequency,
                    customers: 0.0,
                    recency: Vec::new(),
                    age: Vec::new(),
                    age_at: Vec::new(),
                    count: Vec::new(),
                });
            }
            let group = sample.groups.last_mut().expect("pushed above");
            group.customers += 1.0;
            let same_term = group
                .age
                .last()
                .is_some_and(|a| a.to_bits() == h.age.to_bits())
                && group
                    .recency
                    .last()
                    .is_some_and(|r| r.to_bits() == h.recency.to_bits());
            if same_term {
                *group.count.last_mut().expect("a term exists") += 1.0;
            } else {
                group.recency.push(h.recency);
                group.age.push(h.age);
                group.count.push(1.0);
            }
        }
        let mut ages: Vec<f64> = sample
            .groups
            .iter()
            .flat_map(|g| g.age.iter().copied())
            .collect();
        ages.sort_unstable_by(f64::total_cmp);
        ages.dedup_by(|a, b| a.to_bits() == b.to_bits());
        for g in &mut sample.groups {
            g.age_at = g
                .age
                .iter()
                .map(|a| ages.partition_point(|x| x.total_cmp(a).is_lt()) as u32)
                .collect();
        }
        sample.ages = ages;
        sample
    }

    /// Distinct (frequency, recency, age) terms the likelihood sums over.
    pub fn terms(&self) -> usize {
        self.groups.iter().map(|g| g.count.len()).sum()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn max_age(&self) -> f64 {
        self.max_age
    }

    /// The same histories with every time multiplied by `factor`.
    pub fn scaled(&self, factor: f64) -> Sample {
        let mut scaled = self.clone();
        for group in &mut scaled.groups {
            group.recency.iter_mut().for_each(|v| *v *= factor);
            group.age.iter_mut().for_each(|v| *v *= factor);
        }
        scaled.ages.iter_mut().for_each(|v| *v *= factor);
        scaled.max_age *= factor;
        scaled
    }
}

/// ln(1 + e^z) without overflow.
pub(crate) fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// Sums evaluated together by [`ln_hyp2f1_by`]: a CLV's 12 months and the year fit.
const LANES: usize = 16;

/// ln 2F1(a, b; c; z) for 0 <= z < 1 and c > 0, by the power series.
///
/// The Rust special-function crates either truncate this series after a fixed 200 terms
/// (scirs2-special) or link all of Cephes over libm's `exp`/`log` (special-fun), so it is
/// summed here. The arguments BG/NBD passes keep every term after the first of one sign, so
/// the sum has no cancellation; the ratio of successive terms tends to z, and the loop runs
/// until a term no longer changes the sum.
///
/// Here at up to [`LANES`] values of `z` with the same `a`, `b`, `c` (`out[i]` for `zs[i]`):
/// each term's coefficient is shared, and each sum stops where it would alone.
pub(crate) fn ln_hyp2f1_by(a: f64, b: f64, c: f64, zs: &[f64], out: &mut [f64]) {
    assert!(zs.len() <= LANES && out.len() == zs.len());
    let n = zs.len();
    let (mut sum, mut term, mut ln_scale) = ([1.0f64; LANES], [1.0f64; LANES], [0.0f64; LANES]);
    let mut done = [true; LANES];
    let mut open = 0;
    for i in 0..n {
        done[i] = zs[i] <= 0.0;
        open += usize::from(!done[i]);
    }
    let mut k = 0.0f64;
    for _ in 0..2_000_000 {
        if open == 0 {
            break;
        }
        let coefficient = (a + k) * (b + k) / ((c + k) * (k + 1.0));
        k += 1.0;
        for i in 0..n {
            if done[i] {
                continue;
            }
            term[i] *= coefficient * zs[i];
            let before = sum[i];
            sum[i] += term[i];
            if sum[i] == before || term[i] == 0.0 {
                done[i] = true;
                open -= 1;
                continue;
            }
            if sum[i].abs() > 1e200 {
                ln_scale[i] += sum[i].abs().ln();
                term[i] /= sum[i].abs();
                sum[i] = sum[i].signum();
            }
        }
    }
    for i in 0..n {
        out[i] = if zs[i] <= 0.0 {
            0.0
        } else {
            sum[i].abs().ln() + ln_scale[i]
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-`z` sum every figure was computed with before sums were shared.
    fn ln_hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
        if z <= 0.0 {
            return 0.0;
        }
        let mut sum = 1.0f64;
        let mut term = 1.0f64;
        let mut k = 0.0f64;
        // Rescale now and then so that huge partial sums cannot overflow.
        let mut ln_scale = 0.0f64;
        for _ in 0..2_000_000 {
            term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
            k += 1.0;
            let before = sum;
            sum += term;
            if sum == before || term == 0.0 {
                break;
            }
            if sum.abs() > 1e200 {
                ln_scale += sum.abs().ln();
                term /= sum.abs();
                sum = sum.signum();
            }
        }
        sum.abs().ln() + ln_scale
    }

    #[test]
    fn shared_sums_give_the_same_bits_as_one_sum_at_a_time() {
        let zs: Vec<f64> = [0.0, 1e-6, 0.01, 0.2, 0.5, 0.75, 0.9, 0.99, 0.999]
            .into_iter()
            .chain((1..=20).map(|m| f64::from(m) / 21.0))
            .collect();
        for (a, b, c) in [
            (1.6, -0.2, 3.1),
            (0.8, 0.79, 12.0),
            (40.0, 2.5, 41.5),
            (0.24, 1.4, 2.2),
        ] {
            let mut shared = vec![f64::NAN; zs.len()];
            for (zs, out) in zs.chunks(LANES).zip(shared.chunks_mut(LANES)) {
                ln_hyp2f1_by(a, b, c, zs, out);
            }
            for (z, got) in zs.iter().zip(&shared) {
                assert_eq!(
                    got.to_bits(),
                    ln_hyp2f1(a, b, c, *z).to_bits(),
                    "a {a} b {b} c {c} z {z}"
                );
            }
        }
    }

    #[test]
    fn equal_histories_fold_into_one_counted_term_with_the_same_likelihood() {
        let h = |frequency: f64, recency: f64, age: f64| History {
            frequency,
            recency,
            age,
        };
        let histories = vec![
            h(0.0, 0.0, 30.0),
            h(0.0, 0.0, 30.0),
            h(0.0, 0.0, 31.0),
            h(2.0, 10.0, 30.0),
            h(2.0, 10.0, 30.0),
            h(2.0, 12.0, 30.0),
            h(5.0, 29.0, 31.0),
        ];
        let folded = Sample::new(histories.clone());
        assert_eq!((folded.len(), folded.terms()), (7, 5));
        let model = BgNbd {
            r: 0.24,
            alpha: 4.4,
            a: 0.79,
            b: 2.43,
        };
        // The mean of one-customer samples is the likelihood of the whole.
        let (ll, g) = model.log_likelihood(&folded);
        let singles: Vec<(f64, [f64; 4])> = histories
            .iter()
            .map(|x| model.log_likelihood(&Sample::new([*x])))
            .collect();
        let mean = singles.iter().map(|s| s.0).sum::<f64>() / 7.0;
        assert!((ll - mean).abs() < 1e-12, "{ll} vs {mean}");
        for (i, gi) in g.iter().enumerate() {
            let m = singles.iter().map(|s| s.1[i]).sum::<f64>() / 7.0;
            assert!((gi - m).abs() < 1e-12);
        }
    }
}
