//! The REST collections woostream reads, in the order a backfill takes them: products first so
//! that order line items get their categories, then customers, orders, coupons, reviews.

use chrono::{DateTime, Utc};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Products,
    Customers,
    Orders,
    Coupons,
    Reviews,
}

impl Resource {
    pub const ALL: [Resource; 5] = [
        Resource::Products,
        Resource::Customers,
        Resource::Orders,
        Resource::Coupons,
        Resource::Reviews,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Resource::Products => "products",
            Resource::Customers => "customers",
            Resource::Orders => "orders",
            Resource::Coupons => "coupons",
            Resource::Reviews => "reviews",
        }
    }

    pub fn parse(name: &str) -> Option<Resource> {
        Resource::ALL
            .into_iter()
            .find(|r| r.name() == name.trim().to_ascii_lowercase())
    }

    /// `products,orders` → those resources, in backfill order.
    pub fn parse_list(list: &str) -> Result<Vec<Resource>, String> {
        let mut out = Vec::new();
        for name in list.split(',').filter(|s| !s.trim().is_empty()) {
            let r = Resource::parse(name).ok_or_else(|| {
                format!(
                    "{name:?} is not a resource: expected some of {}",
                    Resource::ALL.map(Resource::name).join(",")
                )
            })?;
            out.push(r);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The collection's path under `/wp-json/wc/v3/`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Resource::Reviews => "products/reviews",
            other => other.name(),
        }
    }

    /// The webhook topic whose payload a REST object of this collection is (WooCommerce builds
    /// webhook payloads from the same REST responses).
    pub fn wc_topic(self) -> &'static str {
        match self {
            Resource::Products => "product.updated",
            Resource::Customers => "customer.updated",
            Resource::Orders => "order.updated",
            Resource::Coupons => "coupon.updated",
            Resource::Reviews => "product_review.polled",
        }
    }

    /// The query a backfill pages through: oldest id first, so that pages stay stable while
    /// the shop takes new orders (they are appended at the end), everything WooCommerce would
    /// otherwise filter out by default, and `since` where the collection can filter by
    /// creation date (customers cannot: [`Resource::created_before`] filters them here).
    pub fn backfill_query(self, since: Option<DateTime<Utc>>) -> Vec<(&'static str, String)> {
        let mut q = vec![("orderby", "id".to_string()), ("order", "asc".to_string())];
        match self {
            // The default lists only the role "customer".
            Resource::Customers => q.push(("role", "all".into())),
            Resource::Orders | Resource::Products => q.push(("status", "any".into())),
            // Reviews order by id through "id" too; the default lists approved reviews only,
            // which is what a shop shows.
            Resource::Coupons | Resource::Reviews => {}
        }
        if let Some(since) = since {
            if self != Resource::Customers {
                q.push(("after", since.format("%Y-%m-%dT%H:%M:%S").to_string()));
                q.push(("dates_are_gmt", "true".into()));
            }
        }
        q
    }

    /// Whether a listed object was created before `since` (for collections the API cannot
    /// filter by date).
    pub fn created_before(item: &serde_json::Value, since: DateTime<Utc>) -> bool {
        item["date_created_gmt"]
            .as_str()
            .and_then(parse_gmt)
            .is_some_and(|created| created < since)
    }
}

/// A WooCommerce `…_gmt` field: UTC, written without a zone.
pub fn parse_gmt(text: &str) -> Option<DateTime<Utc>> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_list_is_read_in_backfill_order_and_refuses_unknown_names() {
        assert_eq!(
            Resource::parse_list("reviews, orders,products").unwrap(),
            vec![Resource::Products, Resource::Orders, Resource::Reviews]
        );
        let e = Resource::parse_list("orders,refunds").unwrap_err();
        assert!(
            e.contains("\"refunds\"") && e.contains("products,customers,orders,coupons,reviews"),
            "{e}"
        );
    }

    #[test]
    fn the_backfill_query_lists_everything_oldest_first_and_filters_by_date_where_it_can() {
        let since = "2024-01-01T00:00:00Z".parse().unwrap();
        let q = Resource::Orders.backfill_query(Some(since));
        assert!(q.contains(&("orderby", "id".into())) && q.contains(&("order", "asc".into())));
        assert!(q.contains(&("status", "any".into())));
        assert!(q.contains(&("after", "2024-01-01T00:00:00".into())));
        let q = Resource::Customers.backfill_query(Some(since));
        assert!(q.contains(&("role", "all".into())));
        assert!(!q.iter().any(|(k, _)| *k == "after"));
        let old = serde_json::json!({"date_created_gmt": "2023-12-31T23:59:59"});
        let new = serde_json::json!({"date_created_gmt": "2024-01-01T00:00:00"});
        assert!(Resource::created_before(&old, since));
        assert!(!Resource::created_before(&new, since));
    }
}
