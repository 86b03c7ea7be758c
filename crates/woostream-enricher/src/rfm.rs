//! RFM: recency, frequency and monetary scores from 1 to 5, by quintiles of this shop's own
//! customers, and the 11 named segments.
//!
//! Scoring: the model carries four boundaries per measure (the 20th, 40th, 60th and 80th
//! percentiles of the shop's customers, lower-value rule). Frequency and monetary score
//! `1 + the number of boundaries the value exceeds`; recency (days since the last order, fewer
//! is better) scores `5 - the number of boundaries the value exceeds`. Equal values therefore
//! always get equal scores, and a heavily tied measure (most customers have one order)
//! compresses the scale instead of splitting identical customers at random: one-order
//! customers score F=1 and the first boundary above one order lifts a customer out of it.
//!
//! Segments, from R and the combined FM score `ceil((F + M) / 2)`; customers with exactly one
//! order are new or promising while recent, whatever they spent:
//!
//! | segment            | rule                                      |
//! |--------------------|-------------------------------------------|
//! | New Customers      | one order, R = 5                          |
//! | Promising          | one order, R = 4                          |
//! | Champions          | R 4–5, FM 4–5                             |
//! | Potential Loyalist | R 4–5, FM 1–3                             |
//! | Loyal Customers    | R 3, FM 4–5                               |
//! | Need Attention     | R 3, FM 3                                 |
//! | About To Sleep     | R 3, FM 1–2                               |
//! | At Risk            | R 2, FM 3–4; R 1, FM 4                    |
//! | Can't Lose Them    | R 1–2, FM 5                               |
//! | Hibernating        | R 2, FM 1–2; R 1, FM 3                    |
//! | Lost               | R 1, FM 1–2                               |
//!
//! The names are those of the R `rfm` package; its example intervals overlap and leave gaps
//! ("Others"), so woostream uses the grid above, where every score has exactly one segment.

use serde::{Deserialize, Serialize};
pub use woostream_core::contract::enriched::Segment;

/// The quintile boundaries of one shop's customers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quintiles {
    pub recency_days: [f64; 4],
    pub frequency: [f64; 4],
    pub monetary: [f64; 4],
}

impl Quintiles {
    /// Boundaries used before a shop has a fitted model.
    pub fn prior() -> Quintiles {
        Quintiles {
            recency_days: [30.0, 90.0, 180.0, 365.0],
            frequency: [1.0, 1.0, 2.0, 4.0],
            monetary: [50.0, 100.0, 200.0, 500.0],
        }
    }

    /// Boundaries from the customers themselves: (days since last order, orders, revenue).
    pub fn from_customers(
        customers: impl IntoIterator<Item = (f64, f64, f64)>,
    ) -> Option<Quintiles> {
        let (mut r, mut f, mut m) = (Vec::new(), Vec::new(), Vec::new());
        for (days, orders, revenue) in customers {
            r.push(days);
            f.push(orders);
            m.push(revenue);
        }
        if r.is_empty() {
            return None;
        }
        Some(Quintiles {
            recency_days: boundaries(&mut r),
            frequency: boundaries(&mut f),
            monetary: boundaries(&mut m),
        })
    }

    pub fn score(&self, days_since_last_order: f64, orders: f64, revenue: f64) -> Scores {
        let above = |bounds: &[f64; 4], v: f64| bounds.iter().filter(|b| v > **b).count() as u8;
        Scores {
            recency: 5 - above(&self.recency_days, days_since_last_order),
            frequency: 1 + above(&self.frequency, orders),
            monetary: 1 + above(&self.monetary, revenue),
        }
    }
}

/// The 20th, 40th, 60th and 80th percentiles, each the value at rank floor(q * (n - 1)).
fn boundaries(values: &mut [f64]) -> [f64; 4] {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    std::array::from_fn(|i| values[((i + 1) as f64 * 0.2 * (n - 1) as f64).floor() as usize])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scores {
    pub recency: u8,
    pub frequency: u8,
    pub monetary: u8,
}

/// The segment of a customer with these scores and this many counted orders.
pub fn segment_of(scores: Scores, orders: u32) -> Segment {
    let r = scores.recency;
    let fm = (scores.frequency + scores.monetary).div_ceil(2);
    match (r, fm) {
        (5, _) if orders == 1 => Segment::NewCustomers,
        (4, _) if orders == 1 => Segment::Promising,
        (4..=5, 4..=5) => Segment::Champions,
        (4..=5, _) => Segment::PotentialLoyalist,
        (3, 4..=5) => Segment::LoyalCustomers,
        (3, 3) => Segment::NeedAttention,
        (3, _) => Segment::AboutToSleep,
        (_, 5) => Segment::CantLoseThem,
        (2, 3..=4) | (1, 4) => Segment::AtRisk,
        (2, _) | (1, 3) => Segment::Hibernating,
        _ => Segment::Lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_score_has_exactly_one_segment_and_every_segment_is_reachable() {
        let mut seen = HashSet::new();
        for orders in [1, 2] {
            for recency in 1..=5 {
                for frequency in 1..=5 {
                    for monetary in 1..=5 {
                        seen.insert(segment_of(
                            Scores {
                                recency,
                                frequency,
                                monetary,
                            },
                            orders,
                        ));
                    }
                }
            }
        }
        assert_eq!(seen.len(), 11, "{seen:?}");
    }

    #[test]
    fn the_grid_as_documented() {
        let s = |r, f, m, orders| {
            segment_of(
                Scores {
                    recency: r,
                    frequency: f,
                    monetary: m,
                },
                orders,
            )
        };
        assert_eq!(s(5, 1, 5, 1), Segment::NewCustomers);
        assert_eq!(s(4, 1, 1, 1), Segment::Promising);
        assert_eq!(s(5, 5, 4, 9), Segment::Champions);
        assert_eq!(s(4, 3, 3, 3), Segment::PotentialLoyalist);
        assert_eq!(s(3, 4, 4, 5), Segment::LoyalCustomers);
        assert_eq!(s(3, 3, 2, 2), Segment::NeedAttention);
        assert_eq!(s(3, 1, 2, 2), Segment::AboutToSleep);
        assert_eq!(s(2, 4, 3, 4), Segment::AtRisk);
        assert_eq!(s(1, 4, 4, 4), Segment::AtRisk);
        assert_eq!(s(1, 5, 5, 8), Segment::CantLoseThem);
        assert_eq!(s(2, 5, 5, 8), Segment::CantLoseThem);
        assert_eq!(s(2, 1, 2, 2), Segment::Hibernating);
        assert_eq!(s(1, 3, 3, 2), Segment::Hibernating);
        assert_eq!(s(1, 1, 1, 1), Segment::Lost);
        // A one-order customer who has gone quiet is no longer new.
        assert_eq!(s(3, 1, 5, 1), Segment::NeedAttention);
    }

    #[test]
    fn quintiles_are_relative_to_the_shop_and_ties_score_alike() {
        // 100 customers: recency 0..99 days, orders 1 for 60 of them, revenue 10..1000.
        let customers: Vec<(f64, f64, f64)> = (0..100)
            .map(|i| {
                (
                    i as f64,
                    if i < 60 { 1.0 } else { (i - 58) as f64 },
                    10.0 * (i + 1) as f64,
                )
            })
            .collect();
        let q = Quintiles::from_customers(customers.iter().copied()).unwrap();
        assert_eq!(q.recency_days, [19.0, 39.0, 59.0, 79.0]);
        assert_eq!(q.frequency, [1.0, 1.0, 1.0, 21.0]);
        // The 60 one-order customers all score 1, however the ranks would split them.
        assert!(customers[..60]
            .iter()
            .all(|c| q.score(c.0, c.1, c.2).frequency == 1));
        assert_eq!(q.score(0.0, 2.0, 10.0).frequency, 4);
        assert_eq!(q.score(0.0, 22.0, 10.0).frequency, 5);
        assert_eq!(q.score(0.0, 1.0, 10.0).recency, 5);
        assert_eq!(q.score(19.0, 1.0, 10.0).recency, 5);
        assert_eq!(q.score(19.5, 1.0, 10.0).recency, 4);
        assert_eq!(q.score(500.0, 1.0, 10.0).recency, 1);
        assert_eq!(q.score(0.0, 1.0, 1000.0).monetary, 5);
        // The same customer scores differently in a shop of big spenders.
        let rich = Quintiles {
            monetary: [5_000.0, 10_000.0, 20_000.0, 50_000.0],
            ..q.clone()
        };
        assert_eq!(rich.score(0.0, 1.0, 1000.0).monetary, 1);
    }
}
