//! Maximum-likelihood estimation of the population parameters, by BFGS (argmin) over the
//! logarithms of the parameters, so that every step stays in the positive domain.

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::neldermead::NelderMead;
use argmin::solver::quasinewton::BFGS;

use super::bgnbd::{BgNbd, Sample};
use super::gamma_gamma::{GammaGamma, Spend};

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("not enough data to fit: {0}")]
    NotEnoughData(String),
    #[error("the optimiser failed: {0}")]
    Optimiser(String),
    #[error("the optimiser ended without a usable optimum ({0})")]
    NoOptimum(String),
}

/// How a fit ended, for logs and the model record.
#[derive(Debug, Clone, PartialEq)]
pub struct FitReport {
    pub iterations: u64,
    pub log_likelihood: f64,
}

/// The last evaluation: argmin asks for the cost and the gradient at the same point
/// separately, and one pass over the customers gives both.
#[derive(Default)]
struct Memo(std::sync::Mutex<Option<Evaluation>>);

/// Parameters, cost and gradient.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

impl Memo {
    fn get(&self, p: &[f64], evaluate: impl FnOnce() -> (f64, Vec<f64>)) -> (f64, Vec<f64>) {
        let mut last = self.0.lock().expect("memo lock");
        if let Some((q, cost, grad)) = last.as_ref() {
            if q.as_slice() == p {
                return (*cost, grad.clone());
            }
        }
        let (cost, grad) = evaluate();
        *last = Some((p.to_vec(), cost, grad.clone()));
        (cost, grad)
    }
}

struct BgNbdProblem<'a> {
    sample: &'a Sample,
    memo: Memo,
}

impl BgNbdProblem<'_> {
    fn evaluate(&self, p: &[f64]) -> (f64, Vec<f64>) {
        self.memo.get(p, || {
            let (ll, g) = bgnbd_from_log(p).log_likelihood(self.sample);
            (finite_or_max(-ll), g.iter().map(|v| -v).collect())
        })
    }
}

fn bgnbd_from_log(p: &[f64]) -> BgNbd {
    BgNbd {
        r: p[0].exp(),
        alpha: p[1].exp(),
        a: p[2].exp(),
        b: p[3].exp(),
    }
}

impl CostFunction for BgNbdProblem<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        Ok(self.evaluate(p).0)
    }
}

impl Gradient for BgNbdProblem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.evaluate(p).1)
    }
}

struct GammaGammaProblem {
    spends: Vec<super::gamma_gamma::PreparedSpend>,
    memo: Memo,
}

impl GammaGammaProblem {
    fn evaluate(&self, p: &[f64]) -> (f64, Vec<f64>) {
        self.memo.get(p, || {
            let (ll, g) = gamma_gamma_from_log(p).log_likelihood_prepared(&self.spends);
            (finite_or_max(-ll), g.iter().map(|v| -v).collect())
        })
    }
}

fn gamma_gamma_from_log(p: &[f64]) -> GammaGamma {
    GammaGamma {
        p: p[0].exp(),
        q: p[1].exp(),
        v: p[2].exp(),
    }
}

impl CostFunction for GammaGammaProblem {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        Ok(self.evaluate(p).0)
    }
}

impl Gradient for GammaGammaProblem {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.evaluate(p).1)
    }
}

fn finite_or_max(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        f64::MAX
    }
}

/// Minimises from `start` (log-parameters): BFGS with analytic gradients, which converges
/// tightly and fast; when its line search meets a region where the likelihood is not finite
/// or the curvature misleads it, Nelder-Mead (derivative-free) finds the basin and BFGS
/// polishes from there. Returns the optimum, its cost and the iterations used.
fn minimise<P>(problem: &P, start: Vec<f64>) -> Result<(Vec<f64>, f64, u64), FitError>
where
    P: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>,
{
    match bfgs(problem, start.clone()) {
        Ok(found) => Ok(found),
        Err(first) => {
            tracing::debug!(error = %first, "BFGS failed; trying Nelder-Mead first");
            let (near, _, nm_iterations) = nelder_mead(problem, start)?;
            let (best, cost, iterations) = bfgs(problem, near.clone()).or_else(|_| {
                let cost = problem
                    .cost(&near)
                    .map_err(|e| FitError::Optimiser(e.to_string()))?;
                Ok::<_, FitError>((near, cost, 0))
            })?;
            Ok((best, cost, nm_iterations + iterations))
        }
    }
}

fn nelder_mead<P>(problem: &P, start: Vec<f64>) -> Result<(Vec<f64>, f64, u64), FitError>
where
    P: CostFunction<Param = Vec<f64>, Output = f64>,
{
    let mut simplex = vec![start.clone()];
    for i in 0..start.len() {
        let mut v = start.clone();
        v[i] += 0.5;
        simplex.push(v);
    }
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(1e-12)
        .map_err(|e| FitError::Optimiser(e.to_string()))?;
    let result = Executor::new(Wrapped(problem), solver)
        .configure(|state| state.max_iters(5_000))
        .run()
        .map_err(|e| FitError::Optimiser(e.to_string()))?;
    let state = result.state();
    let best = state
        .get_best_param()
        .cloned()
        .ok_or_else(|| FitError::NoOptimum("no parameters".into()))?;
    Ok((best, state.get_best_cost(), state.get_iter()))
}

/// Lends a problem to an executor, which wants to own one.
struct Wrapped<'a, P>(&'a P);

impl<P: CostFunction<Param = Vec<f64>, Output = f64>> CostFunction for Wrapped<'_, P> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        self.0.cost(p)
    }
}

impl<P: Gradient<Param = Vec<f64>, Gradient = Vec<f64>>> Gradient for Wrapped<'_, P> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        self.0.gradient(p)
    }
}

fn bfgs<P>(problem: &P, start: Vec<f64>) -> Result<(Vec<f64>, f64, u64), FitError>
where
    P: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>,
{
    let n = start.len();
    let identity: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    // The mean log-likelihood's gradient cannot be summed more exactly than about 1e-10 over
    // a million customers: tighter tolerances only make BFGS wander in rounding noise.
    let solver = BFGS::new(MoreThuenteLineSearch::new())
        .with_tolerance_grad(1e-8)
        .and_then(|s| s.with_tolerance_cost(1e-12))
        .map_err(|e| FitError::Optimiser(e.to_string()))?;
    let result = Executor::new(Wrapped(problem), solver)
        .configure(|state| state.param(start).inv_hessian(identity).max_iters(500))
        .run()
        .map_err(|e| FitError::Optimiser(e.to_string()))?;
    let state = result.state();
    if let TerminationStatus::Terminated(TerminationReason::SolverExit(why)) =
        state.get_termination_status()
    {
        tracing::debug!(%why, "optimiser stopped early");
    }
    let best = state
        .get_best_param()
        .cloned()
        .ok_or_else(|| FitError::NoOptimum("no parameters".into()))?;
    let cost = state.get_best_cost();
    if !cost.is_finite() || best.iter().any(|v| !v.is_finite()) {
        return Err(FitError::NoOptimum(format!("cost {cost}")));
    }
    Ok((best, cost, state.get_iter()))
}

/// Fits BG/NBD. Times are rescaled so the oldest customer's age is 10 before optimising,
/// which keeps the parameters of similar magnitude whatever the time unit; `alpha` is scaled
/// back afterwards.
pub fn fit_bgnbd(sample: &Sample) -> Result<(BgNbd, FitReport), FitError> {
    if sample.is_empty() || sample.max_age() <= 0.0 {
        return Err(FitError::NotEnoughData(format!(
            "{} customers, none older than a day",
            sample.len()
        )));
    }
    let scale = 10.0 / sample.max_age();
    let scaled = sample.scaled(scale);
    let (best, cost, iterations) = minimise(
        &BgNbdProblem {
            sample: &scaled,
            memo: Memo::default(),
        },
        vec![0.1; 4],
    )?;
    let mut params = bgnbd_from_log(&best);
    params.alpha /= scale;
    let log_likelihood = params.log_likelihood(sample).0 * sample.len() as f64;
    let _ = cost;
    Ok((
        params,
        FitReport {
            iterations,
            log_likelihood,
        },
    ))
}

/// Fits Gamma-Gamma on repeat customers (frequency > 0 and a positive mean value).
pub fn fit_gamma_gamma(spends: &[Spend]) -> Result<(GammaGamma, FitReport), FitError> {
    let mut repeat: Vec<Spend> = spends
        .iter()
        .copied()
        .filter(|s| s.frequency > 0.0 && s.mean_value > 0.0)
        .collect();
    if repeat.is_empty() {
        return Err(FitError::NotEnoughData(
            "no repeat customers with a positive spend".into(),
        ));
    }
    repeat.sort_by(|a, b| a.frequency.total_cmp(&b.frequency));
    // v is a scale parameter of spend: fit on spends scaled to a mean of about one (whatever
    // the currency), then scale v back, as BG/NBD does with time.
    let mean = repeat.iter().map(|s| s.mean_value).sum::<f64>() / repeat.len() as f64;
    let scale = if mean > 0.0 && mean.is_finite() {
        1.0 / mean
    } else {
        1.0
    };
    let scaled: Vec<Spend> = repeat
        .iter()
        .map(|s| Spend {
            frequency: s.frequency,
            mean_value: s.mean_value * scale,
        })
        .collect();
    let (best, _, iterations) = minimise(
        &GammaGammaProblem {
            spends: super::gamma_gamma::prepare(&scaled),
            memo: Memo::default(),
        },
        vec![0.1; 3],
    )?;
    let mut params = gamma_gamma_from_log(&best);
    params.v /= scale;
    let log_likelihood = params.log_likelihood(&repeat).0 * repeat.len() as f64;
    Ok((
        params,
        FitReport {
            iterations,
            log_likelihood,
        },
    ))
}
