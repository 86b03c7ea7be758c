//! What each number in a profile means, in words a shop can hand to the person it describes
//! (a subject access request): how the segment, the scores, P(alive), the CLV and the churn
//! risk were reached.

use woostream_core::contract::enriched::{ChurnRisk, CustomerProfile, Segment};

/// One profile's numbers, each with its explanation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Explained {
    pub segment: String,
    pub rfm_scores: String,
    pub p_alive: String,
    pub clv: String,
    pub churn_risk: String,
    pub vip: String,
}

/// What a segment says about a customer.
pub fn segment_meaning(s: Segment) -> &'static str {
    match s {
        Segment::Champions => "bought recently, often, and spent the most",
        Segment::LoyalCustomers => "buys regularly and spends well, not quite the most recent",
        Segment::PotentialLoyalist => {
            "a recent customer with more than one order who may become loyal"
        }
        Segment::NewCustomers => "placed a first order very recently",
        Segment::Promising => "placed a first order recently",
        Segment::NeedAttention => "average recency, frequency and spend",
        Segment::AboutToSleep => "has not bought for a while and bought little",
        Segment::AtRisk => "bought often or spent well, but not for a long time",
        Segment::CantLoseThem => "was among the best customers, and has not bought for a long time",
        Segment::Hibernating => "last bought long ago, rarely and for little",
        Segment::Lost => "the longest without an order, with few and small orders",
    }
}

/// The explanation of every number of `p`.
pub fn explain(p: &CustomerProfile) -> Explained {
    let segment = format!(
        "{}: {}. Segments follow from the RFM scores (recency, and frequency and monetary together), with one-order customers apart.",
        p.segment.name(),
        segment_meaning(p.segment)
    );
    let rfm_scores = format!(
        "recency {}, frequency {}, monetary {} (each 1 to 5): this shop's customers are split into five equal groups by days since their last order, by number of orders and by spend; 5 is the most recent, most frequent, highest spending fifth.",
        p.recency_score, p.frequency_score, p.monetary_score
    );
    let p_alive = format!(
        "{:.2}: the probability that the customer still buys here, from the BG/NBD model fitted to this shop's customers, given {} orders, the first on {} and the last on {}.",
        p.p_alive,
        p.orders_count,
        p.first_order_at
            .map_or("-".into(), |t| t.format("%Y-%m-%d").to_string()),
        p.last_order_at
            .map_or("-".into(), |t| t.format("%Y-%m-%d").to_string()),
    );
    let clv = format!(
        "{} {}: the expected spend over the next 12 months, discounted: expected purchases (BG/NBD: {:.2} in 30 days, {:.2} in 365) times the expected order value ({}, Gamma-Gamma model of this shop's order values).",
        p.clv_12_months,
        p.currency.as_deref().unwrap_or(""),
        p.expected_purchases_30d,
        p.expected_purchases_365d,
        p.expected_order_value
    );
    let churn_risk = format!(
        "{}: {}",
        p.churn_risk.as_str(),
        if p.orders_count > 1 {
            match p.churn_risk {
                ChurnRisk::Low => "P(alive) is 0.7 or more",
                ChurnRisk::Medium => "P(alive) is between 0.3 and 0.7",
                ChurnRisk::High => "P(alive) is below 0.3",
            }
        } else {
            match p.churn_risk {
                ChurnRisk::Low => "one order, recency score 4 or 5",
                ChurnRisk::Medium => "one order, recency score 2 or 3",
                ChurnRisk::High => "one order, recency score 1",
            }
        }
    );
    let vip = if p.vip {
        "yes: the CLV is among this shop's highest (its VIP threshold)".into()
    } else {
        "no: the CLV is below this shop's VIP threshold".into()
    };
    Explained {
        segment,
        rfm_scores,
        p_alive,
        clv,
        churn_risk,
        vip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_segment_has_a_meaning_and_an_explanation_names_the_numbers() {
        for s in Segment::ALL {
            assert!(!segment_meaning(s).is_empty());
        }
        let p = crate::partition_tests::sample_profile();
        let e = explain(&p);
        assert!(e.segment.starts_with(p.segment.name()), "{}", e.segment);
        assert!(e
            .rfm_scores
            .contains(&format!("recency {}", p.recency_score)));
        assert!(e.p_alive.starts_with(&format!("{:.2}", p.p_alive)));
        assert!(e.churn_risk.starts_with(p.churn_risk.as_str()));
    }
}
