//! woostream's CLV models against the reference implementation, `lifetimes` 0.11.3, on the
//! CDNOW sample of Fader, Hardie & Lee (2,357 customers, times in weeks): the fitted
//! parameters and every customer's predictions must agree to 1e-4 relative.

use std::process::Command;

use serde_json::Value;
use woostream_enricher::clv::{self, BgNbd, GammaGamma, History, Sample, Spend};

const CDNOW: &str = "tests/fixtures/cdnow/cdnow_customers_summary_with_transactions.csv";
const TOLERANCE: f64 = 1e-4;

struct Customer {
    history: History,
    spend: Spend,
}

fn cdnow() -> Vec<Customer> {
    let text =
        std::fs::read_to_string(woostream_tests::repo_root().join(CDNOW)).expect("CDNOW fixture");
    text.lines()
        .skip(1)
        .map(|line| {
            let v: Vec<f64> = line
                .split(',')
                .map(|f| f.parse().expect("number"))
                .collect();
            Customer {
                history: History {
                    frequency: v[1],
                    recency: v[2],
                    age: v[3],
                },
                spend: Spend {
                    frequency: v[1],
                    mean_value: v[4],
                },
            }
        })
        .collect()
}

fn reference() -> Value {
    let python = woostream_tests::python();
    let out = Command::new(&python)
        .arg(woostream_tests::repo_root().join("tests/independent/lifetimes_reference.py"))
        .arg("predictions")
        .arg(woostream_tests::repo_root().join(CDNOW))
        .output()
        .unwrap_or_else(|e| {
            panic!("running {python} (make test creates a venv with lifetimes): {e}")
        });
    assert!(
        out.status.success(),
        "lifetimes failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("lifetimes JSON")
}

fn assert_close(what: &str, ours: f64, theirs: f64) {
    let scale = theirs.abs().max(1e-12);
    assert!(
        ((ours - theirs) / scale).abs() <= TOLERANCE,
        "{what}: woostream {ours} vs lifetimes {theirs} (relative difference {:.2e})",
        ((ours - theirs) / scale).abs()
    );
}

fn series(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

#[test]
fn fit_and_predictions_agree_with_lifetimes_on_cdnow() {
    let customers = cdnow();
    assert_eq!(customers.len(), 2357);
    let reference = reference();

    let (bg, _) =
        clv::fit_bgnbd(&Sample::new(customers.iter().map(|c| c.history))).expect("BG/NBD fit");
    let spends: Vec<Spend> = customers.iter().map(|c| c.spend).collect();
    let (gg, _) = clv::fit_gamma_gamma(&spends).expect("Gamma-Gamma fit");

    // The paper's published values, to the digits it prints.
    assert_eq!(
        format!("{:.3} {:.3} {:.3} {:.3}", bg.r, bg.alpha, bg.a, bg.b),
        "0.243 4.414 0.793 2.426"
    );
    assert_eq!(
        format!("{:.2} {:.2} {:.2}", gg.p, gg.q, gg.v),
        "6.25 3.74 15.45"
    );

    let theirs = &reference["bgnbd"];
    for (name, ours) in [("r", bg.r), ("alpha", bg.alpha), ("a", bg.a), ("b", bg.b)] {
        assert_close(name, ours, theirs[name].as_f64().unwrap());
    }
    let theirs = &reference["gamma_gamma"];
    for (name, ours) in [("p", gg.p), ("q", gg.q), ("v", gg.v)] {
        assert_close(name, ours, theirs[name].as_f64().unwrap());
    }

    let per_customer = &reference["customers"];
    let p_alive = series(&per_customer["p_alive"]);
    let expected_value = series(&per_customer["expected_value"]);
    let clv_12 = series(&per_customer["clv_12_months"]);
    let horizons: Vec<(f64, Vec<f64>)> = per_customer["expected_purchases"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(h, v)| (h.parse().unwrap(), series(v)))
        .collect();
    assert_eq!(horizons.len(), 3);
    for (i, c) in customers.iter().enumerate() {
        assert_close(
            &format!("P(alive) of customer {}", i + 1),
            bg.p_alive(c.history),
            p_alive[i],
        );
        for (t, values) in &horizons {
            assert_close(
                &format!("purchases in {t} weeks, customer {}", i + 1),
                bg.expected_purchases(*t, c.history),
                values[i],
            );
        }
        assert_close(
            &format!("expected value, customer {}", i + 1),
            gg.expected_value(c.spend),
            expected_value[i],
        );
        let ours = clv::lifetime_value(&bg, &gg, c.history, c.spend, 12, 0.01, 4.345);
        assert_close(
            &format!("12-month CLV, customer {}", i + 1),
            ours,
            clv_12[i],
        );
    }
}

#[test]
fn predictions_stay_finite_for_extreme_histories() {
    let bg = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };
    let gg = GammaGamma {
        p: 6.25,
        q: 3.74,
        v: 15.44,
    };
    for frequency in [0.0, 1.0, 50.0, 1_000.0, 100_000.0] {
        for (recency, age) in [
            (0.0, 0.0),
            (0.0, 1_000.0),
            (1.0, 100_000.0),
            (99_999.0, 100_000.0),
        ] {
            let recency: f64 = if frequency == 0.0 { 0.0 } else { recency };
            let h = History {
                frequency,
                recency,
                age,
            };
            let spend = Spend {
                frequency,
                mean_value: 1e9,
            };
            let values = [
                bg.p_alive(h),
                bg.expected_purchases(365.0, h),
                clv::lifetime_value(&bg, &gg, h, spend, 12, 0.01, 30.0),
            ];
            for v in values {
                assert!(v.is_finite() && v >= 0.0, "{h:?} gave {values:?}");
            }
            assert!(values[0] <= 1.0);
        }
    }
    // A very frequent buyer who vanished long ago is almost surely gone, not NaN.
    let vanished = History {
        frequency: 500.0,
        recency: 100.0,
        age: 10_000.0,
    };
    assert!(bg.p_alive(vanished) < 1e-6);
}
