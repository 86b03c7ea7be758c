use super::*;
use chrono::TimeZone;
use woostream_core::contract::events::OrderStatus;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/woocommerce/"
);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).unwrap()
}

static CUSTOMERS: std::sync::LazyLock<CustomerHasher> =
    std::sync::LazyLock::new(|| CustomerHasher::new(b"test installation key"));

fn email_hash(email: &str) -> Option<String> {
    CUSTOMERS.email_hash(email)
}

fn delivery(topic: &'static str) -> WebhookDelivery<'static> {
    WebhookDelivery {
        shop_id: "eu",
        source: "https://example.com/",
        wc_topic: Some(topic),
        webhook_id: Some(3),
        delivery_id: Some("abc"),
        correlation_id: "corr-1",
        received_at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap(),
        origin: Origin::Webhook,
        customers: &CUSTOMERS,
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const TOPICS: &[&str] = &[
        "order.created",
        "order.updated",
        "order.deleted",
        "product.updated",
        "customer.created",
        "customer.deleted",
        "coupon.updated",
        "action.woocommerce_low_stock",
    ];

    proptest! {
        /// Any bytes under any topic: an event or a rejection, never a panic, and a rejection
        /// never repeats the payload's values.
        #[test]
        fn any_body_is_an_event_or_a_clean_rejection(
            body in prop::collection::vec(any::<u8>(), 0..600),
            topic in prop::sample::select(TOPICS),
        ) {
            let _ = normalise(&delivery(topic), &body);
        }

        /// The fixture order with one field replaced by any JSON value.
        #[test]
        fn a_real_order_with_any_field_changed_never_panics(
            field in prop::sample::select(&[
                "total", "id", "customer_id", "line_items", "billing", "status", "currency",
                "refunds", "fee_lines", "date_created_gmt", "discount_total", "coupon_lines",
            ][..]),
            value in prop_oneof![
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(serde_json::Value::from),
                "[a-zA-Z0-9@. ]{0,40}".prop_map(|s| serde_json::Value::from(format!("{s} secret@example.com"))),
                Just(serde_json::Value::Null),
                Just(serde_json::json!([{"id": 1, "quantity": -5, "total": "1e30"}])),
                Just(serde_json::json!({"email": 7})),
            ],
        ) {
            let body = with_order(|v| v[field] = value.clone());
            if let Err(r) = normalise(&delivery("order.updated"), &body) {
                prop_assert!(!r.reason.contains("secret@example.com"), "{}", r.reason);
            }
        }
    }
}

fn m(s: &str) -> Money {
    s.parse().unwrap()
}

fn order_of(e: Event) -> (CustomerKey, OrderEvent) {
    match e {
        Event::Order(k, o) => (k, *o),
        other => panic!("not an order: {other:?}"),
    }
}

fn with_order(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("woo_order_example.json")).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn the_fixture_order_becomes_a_canonical_order_field_by_field() {
    let body = fixture("woo_order_example.webhook_body.json");
    let (key, e) = order_of(normalise(&delivery("order.created"), &body).unwrap());
    let guest = email_hash("john.doe@example.com").unwrap();
    assert_eq!(
        key,
        CustomerKey {
            shop_id: "eu".into(),
            customer: format!("guest:{guest}")
        }
    );
    assert_eq!(e.action, Action::Created);
    assert_eq!(e.order_id, 727);
    assert_eq!(e.envelope.event_id, event_id("eu", "order.created", &body));
    assert_eq!(e.envelope.wc_topic, "order.created");
    assert_eq!(e.envelope.webhook_id, Some(3));
    assert_eq!(e.envelope.delivery_id.as_deref(), Some("abc"));
    assert_eq!(e.envelope.correlation_id, "corr-1");
    let o = e.order.unwrap();
    assert_eq!(o.number, "727");
    assert_eq!(o.status, OrderStatus::Processing);
    assert_eq!(o.status_slug, "processing");
    assert_eq!(o.currency, "USD");
    assert!(!o.prices_include_tax);
    assert_eq!(o.created_via.as_deref(), Some("rest-api"));
    // _gmt fields, read as UTC (the local ones are three hours behind in the fixture).
    assert_eq!(
        o.created_at,
        Some(Utc.with_ymd_and_hms(2017, 3, 22, 19, 28, 2).unwrap())
    );
    assert_eq!(
        o.modified_at,
        Some(Utc.with_ymd_and_hms(2017, 3, 22, 19, 28, 8).unwrap())
    );
    assert_eq!(
        o.paid_at,
        Some(Utc.with_ymd_and_hms(2017, 3, 22, 19, 28, 8).unwrap())
    );
    assert_eq!(o.completed_at, None);
    assert_eq!(o.total, m("29.35"));
    assert_eq!(o.total_tax, m("1.35"));
    assert_eq!(o.subtotal, m("18.00"));
    assert_eq!(o.shipping_total, m("10.00"));
    assert_eq!(o.cart_tax, m("1.35"));
    assert_eq!(o.discount_total, Money::ZERO);
    assert_eq!(o.fee_total, Money::ZERO);
    assert_eq!(o.refunded_total, Money::ZERO);
    assert_eq!(o.customer_id, None, "customer_id 0 is a guest");
    assert_eq!(o.customer_key, format!("guest:{guest}"));
    assert_eq!(o.email_hash.as_deref(), Some(guest.as_str()));
    let billing = o.billing.unwrap();
    assert_eq!(billing.email.as_deref(), Some("john.doe@example.com"));
    assert_eq!(billing.company, None, "empty strings are not set");
    assert_eq!(billing.city.as_deref(), Some("San Francisco"));
    assert_eq!(o.shipping.unwrap().phone, None);
    assert_eq!(o.payment_method.as_deref(), Some("bacs"));
    assert_eq!(
        o.payment_method_title.as_deref(),
        Some("Direct Bank Transfer")
    );
    assert_eq!(o.transaction_id, None);
    assert_eq!(o.line_items.len(), 2);
    let (a, b) = (&o.line_items[0], &o.line_items[1]);
    assert_eq!(
        (a.id, a.product_id, a.variation_id, a.quantity),
        (315, Some(93), None, 2)
    );
    assert_eq!(a.sku, None, "an empty SKU is not set");
    assert_eq!(
        (a.subtotal, a.subtotal_tax, a.total, a.total_tax),
        (m("6"), m("0.45"), m("6"), m("0.45"))
    );
    assert_eq!(
        (b.id, b.product_id, b.variation_id, b.quantity),
        (316, Some(22), Some(23), 1)
    );
    assert_eq!(b.name, "Ship Your Idea &ndash; Color: Black, Size: M Test");
    assert_eq!(b.sku.as_deref(), Some("Bar3"));
    assert!(o.coupon_codes.is_empty() && o.refunds.is_empty());
}

#[test]
fn registered_customers_are_keyed_by_id_and_refunds_fees_coupons_add_up() {
    let body = with_order(|v| {
        v["customer_id"] = 25.into();
        v["refunds"] = serde_json::json!([{"id": 726, "refund": "", "total": "-10.00"}, {"id": 730, "reason": "broken", "total": "-2.5"}]);
        v["fee_lines"] =
            serde_json::json!([{"id": 1, "total": "5.00"}, {"id": 2, "total": "-1.25"}]);
        v["coupon_lines"] = serde_json::json!([{"id": 1, "code": "FLASH10", "discount": "1.00"}]);
    });
    let (key, e) = order_of(normalise(&delivery("order.updated"), &body).unwrap());
    assert_eq!(key.customer, "25");
    let o = e.order.unwrap();
    assert_eq!(o.customer_id, Some(25));
    assert_eq!(o.refunded_total, m("12.5"));
    assert_eq!(o.refunds[0].reason, None);
    assert_eq!(o.refunds[1].reason.as_deref(), Some("broken"));
    assert_eq!(o.fee_total, m("3.75"));
    assert_eq!(o.coupon_codes, vec!["FLASH10".to_string()]);
}

#[test]
fn guests_key_by_normalised_email_so_case_and_spaces_do_not_split_them() {
    let a = with_order(|v| v["billing"]["email"] = " John.Doe@Example.com ".into());
    let b = with_order(|v| v["billing"]["email"] = "john.doe@example.com".into());
    let (ka, _) = order_of(normalise(&delivery("order.created"), &a).unwrap());
    let (kb, _) = order_of(normalise(&delivery("order.created"), &b).unwrap());
    assert_eq!(ka, kb);
    assert!(!ka.customer.contains('@'), "the key carries no email");
    let none = with_order(|v| v["billing"]["email"] = "".into());
    let (k, _) = order_of(normalise(&delivery("order.created"), &none).unwrap());
    assert_eq!(k.customer, "order:727");
}

#[test]
fn money_as_numbers_missing_dates_deleted_products_and_object_meta_are_accepted() {
    let body = with_order(|v| {
        v["total"] = serde_json::json!(29.35);
        v["shipping_total"] = serde_json::json!(10);
        v["line_items"][0]["total"] = serde_json::json!(6.0);
        v["line_items"][1]["sku"] = serde_json::Value::Null;
        v["line_items"][1]["product_id"] = 0.into();
        v["line_items"][1]["meta_data"] =
            serde_json::json!([{"id": 1, "key": "_options", "value": {"a": [1, 2], "b": null}}]);
        v["meta_data"] =
            serde_json::json!([{"id": 2, "key": "x", "value": {"nested": {"deep": true}}}]);
        v.as_object_mut().unwrap().remove("date_created_gmt");
        v["date_modified_gmt"] = serde_json::Value::Null;
        v["date_paid_gmt"] = "".into();
        v["id"] = "727".into();
    });
    let (_, e) = order_of(normalise(&delivery("order.updated"), &body).unwrap());
    let o = e.order.unwrap();
    assert_eq!(o.id, 727, "numeric strings are ids too");
    assert_eq!(o.total, m("29.35"));
    assert_eq!(o.shipping_total, m("10"));
    assert_eq!(o.line_items[0].total, m("6"));
    assert_eq!(o.line_items[1].sku, None);
    assert_eq!(o.line_items[1].product_id, None);
    assert_eq!((o.created_at, o.modified_at, o.paid_at), (None, None, None));
}

#[test]
fn unknown_order_statuses_keep_their_slug() {
    let body = with_order(|v| v["status"] = "awaiting-shipment".into());
    let (_, e) = order_of(normalise(&delivery("order.updated"), &body).unwrap());
    let o = e.order.unwrap();
    assert_eq!(o.status, OrderStatus::Other);
    assert_eq!(o.status_slug, "awaiting-shipment");
    assert_eq!(OrderStatus::from_slug("wc-on-hold"), OrderStatus::OnHold);
    assert_eq!(
        OrderStatus::from_slug("checkout-draft"),
        OrderStatus::CheckoutDraft
    );
}

#[test]
fn deleted_events_carry_only_the_id() {
    let (key, e) = order_of(normalise(&delivery("order.deleted"), br#"{"id":727}"#).unwrap());
    assert_eq!(
        (
            key.customer.as_str(),
            e.order_id,
            e.order.is_none(),
            e.action
        ),
        ("order:727", 727, true, Action::Deleted)
    );
    match normalise(&delivery("customer.deleted"), br#"{"id":25}"#).unwrap() {
        Event::Customer(k, c) => assert_eq!(
            (k.customer.as_str(), c.customer_id, c.customer.is_none()),
            ("25", 25, true)
        ),
        other => panic!("{other:?}"),
    }
    match normalise(&delivery("product.deleted"), br#"{"id":794}"#).unwrap() {
        Event::Product(k, p) => assert_eq!((k.product_id, p.product.is_none()), (794, true)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn products_customers_and_actions_from_fixtures() {
    match normalise(
        &delivery("product.updated"),
        &fixture("woo_product_example.json"),
    )
    .unwrap()
    {
        Event::Product(k, e) => {
            let p = e.product.unwrap();
            assert_eq!(k.product_id, p.id);
            assert_eq!(p.product_type, "simple");
            assert!(p.price.is_some());
            assert!(!p.categories.is_empty());
            assert!(p.categories.iter().all(|c| c.id > 0 && !c.name.is_empty()));
            assert_eq!(p.stock_status, "instock");
            assert!(p.modified_at.is_some());
        }
        other => panic!("{other:?}"),
    }
    match normalise(
        &delivery("customer.created"),
        &fixture("woo_customer_example.json"),
    )
    .unwrap()
    {
        Event::Customer(k, e) => {
            let c = e.customer.unwrap();
            assert_eq!(k.customer, c.id.to_string());
            assert_eq!(c.email_hash, c.email.as_deref().and_then(email_hash));
            assert_eq!(c.role, "customer");
            assert!(c.billing.is_some() && c.created_at.is_some());
        }
        other => panic!("{other:?}"),
    }
    let body = br#"{"action":"woocommerce_low_stock","arg":{"id":93}}"#;
    match normalise(&delivery("action.woocommerce_low_stock"), body).unwrap() {
        Event::Action(k, e) => {
            assert_eq!(k.action_name, "woocommerce_low_stock");
            assert_eq!(e.arg_json, r#"{"id":93}"#);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reviews_lose_html_and_the_reviewer_email() {
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&fixture("woo_review_list_example.json")).unwrap();
    let d = WebhookDelivery {
        wc_topic: None,
        origin: Origin::Poll,
        ..delivery("x")
    };
    let one = serde_json::to_vec(&list[0]).unwrap();
    match normalise_review(&d, &one).unwrap() {
        Event::Review(k, e) => {
            let r = e.review.unwrap();
            assert_eq!(k.product_id, r.product_id);
            assert!(!r.text.contains('<') && !r.text.is_empty(), "{}", r.text);
            assert!(r.reviewer_email_hash.is_some());
            assert!((0..=5).contains(&r.rating));
            assert_eq!(e.envelope.origin, Origin::Poll);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        html_to_text("<p>Nice &amp; <b>loud</b>!</p>\n"),
        "Nice & loud !"
    );
}

fn rejected(topic: &'static str, body: &[u8]) -> Rejection {
    normalise(&delivery(topic), body).unwrap_err()
}

#[test]
fn bad_input_is_classified_without_echoing_values() {
    assert_eq!(rejected("order.created", b"").code, RejectCode::InvalidJson);
    assert_eq!(
        rejected("order.created", b"{\"id\": 7,").code,
        RejectCode::InvalidJson
    );
    assert_eq!(
        rejected("order.created", b"{\"id\":7} trailing").code,
        RejectCode::InvalidJson
    );
    assert_eq!(
        rejected("order.created", &[0xff, 0xfe, b'{']).code,
        RejectCode::NotUtf8
    );
    assert_eq!(
        rejected("order.created", b"[1,2]").code,
        RejectCode::WrongResource
    );
    // A product under an order topic.
    let r = rejected("order.created", &fixture("woo_product_example.json"));
    assert_eq!(r.code, RejectCode::WrongResource, "{r:?}");
    assert!(r.reason.contains("missing field"), "{r:?}");
    // An order under a customer topic.
    assert_eq!(
        rejected("customer.updated", &fixture("woo_order_example.json")).code,
        RejectCode::WrongResource
    );
    let r = rejected("order.updated", br#"{"code":"woocommerce_rest_shop_order_invalid_id","message":"Invalid ID.","data":{"status":404}}"#);
    assert_eq!(r.code, RejectCode::ResourceError);
    assert!(r.reason.contains("woocommerce_rest_shop_order_invalid_id"));
    assert_eq!(
        rejected("order.archived", b"{}").code,
        RejectCode::UnknownTopic
    );
    assert_eq!(
        rejected("refund.created", b"{}").code,
        RejectCode::UnknownTopic
    );
    assert_eq!(
        rejected("action.wp_login", b"{}").code,
        RejectCode::UnknownTopic
    );
    assert_eq!(
        normalise(
            &WebhookDelivery {
                wc_topic: None,
                ..delivery("x")
            },
            b"{}"
        )
        .unwrap_err()
        .code,
        RejectCode::UnknownTopic
    );
    // A personal value in a wrongly typed field is not repeated in the reason.
    let body = with_order(|v| v["prices_include_tax"] = "jane.roe@example.com".into());
    let r = rejected("order.created", &body);
    assert_eq!(r.code, RejectCode::InvalidField);
    assert!(!r.reason.contains("jane"), "{r:?}");
    assert!(
        r.reason.contains("prices_include_tax"),
        "the path is named: {r:?}"
    );
    let body = with_order(|v| v["line_items"][0]["quantity"] = "lots".into());
    let r = rejected("order.created", &body);
    assert!(r.reason.contains("line_items[0].quantity"), "{r:?}");
}

#[test]
fn topics_parse_as_woocommerce_validates_them() {
    assert_eq!(
        parse_topic("order.restored"),
        Some(Topic::Resource(Resource::Order, Action::Restored))
    );
    assert_eq!(
        parse_topic("coupon.created"),
        Some(Topic::Resource(Resource::Coupon, Action::Created))
    );
    assert_eq!(
        parse_topic("product.published"),
        Some(Topic::Resource(Resource::Product, Action::Updated))
    );
    assert_eq!(parse_topic("order.published"), None);
    assert_eq!(
        parse_topic("action.wc_custom_hook"),
        Some(Topic::Custom("wc_custom_hook".into()))
    );
    assert_eq!(parse_topic("order"), None);
}

#[test]
fn identical_payloads_get_identical_event_ids() {
    let body = fixture("woo_order_example.webhook_body.json");
    let a = normalise(&delivery("order.updated"), &body).unwrap();
    let b = normalise(
        &WebhookDelivery {
            correlation_id: "other",
            delivery_id: Some("zzz"),
            ..delivery("order.updated")
        },
        &body,
    )
    .unwrap();
    assert_eq!(a.envelope().event_id, b.envelope().event_id);
    assert_ne!(
        event_id("eu", "order.updated", &body),
        event_id("us", "order.updated", &body)
    );
}

#[test]
fn amounts_beyond_the_contract_are_refused_not_panicked_on_or_rounded() {
    // Two line subtotals at rust_decimal's maximum: their sum used to panic the handler.
    let body = with_order(|o| {
        let first = o["line_items"][0].clone();
        o["line_items"] = serde_json::json!([first.clone(), first]);
        o["line_items"][0]["subtotal"] = "79228162514264337593543950335".into();
        o["line_items"][1]["subtotal"] = "79228162514264337593543950335".into();
    });
    let r = rejected("order.created", &body);
    assert_eq!(r.code, RejectCode::InvalidField, "{}", r.reason);

    // Each line within the contract, their sum beyond it.
    let body = with_order(|o| {
        let first = o["line_items"][0].clone();
        o["line_items"] = serde_json::json!([first.clone(), first]);
        o["line_items"][0]["subtotal"] = "900000000000000000".into();
        o["line_items"][1]["subtotal"] = "900000000000000000".into();
    });
    let r = rejected("order.created", &body);
    assert_eq!(r.code, RejectCode::InvalidField);
    assert!(r.reason.contains("add up"), "{}", r.reason);

    // A total of 1e25 (or anything from 10^18) does not fit decimal(24,6).
    for total in ["1e25", "1000000000000000000", "-1000000000000000000.5"] {
        let body = with_order(|o| o["total"] = total.into());
        let r = rejected("order.created", &body);
        assert!(
            r.reason.contains("decimal(24,6)"),
            "{total}: {:?} {}",
            r.code,
            r.reason
        );
    }
    // The largest amount the contract holds is kept exactly.
    let body = with_order(|o| o["total"] = "999999999999999999.999999".into());
    let (_, e) = order_of(normalise(&delivery("order.created"), &body).unwrap());
    assert_eq!(e.order.unwrap().total, m("999999999999999999.999999"));
}

#[test]
fn a_signed_order_resent_as_a_deletion_erases_nothing() {
    // WooCommerce signs only the body: the topic header is the attacker's to choose.
    for topic in ["customer.deleted", "order.deleted", "product.deleted"] {
        let r = rejected(topic, &fixture("woo_order_example.json"));
        assert_eq!(r.code, RejectCode::WrongResource, "{topic}: {}", r.reason);
        assert!(r.reason.contains("exactly"), "{}", r.reason);
    }
    assert!(normalise(&delivery("customer.deleted"), br#"{"id": 42}"#).is_ok());
}

#[test]
fn a_body_under_another_resources_topic_is_a_dead_letter() {
    // WooCommerce signs only the body: each real payload resent under every other resource's
    // topic must be refused, not read as that resource.
    let coupon = br#"{"id": 5, "code": "spring", "amount": "10.00", "discount_type": "percent", "email_restrictions": []}"#.to_vec();
    let bodies = [
        ("order", fixture("woo_order_example.webhook_body.json")),
        ("product", fixture("woo_product_example.json")),
        ("customer", fixture("woo_customer_example.json")),
        ("coupon", coupon),
    ];
    for (resource, body) in &bodies {
        let own = format!("{resource}.updated");
        assert!(
            normalise(&delivery(Box::leak(own.into_boxed_str())), body).is_ok(),
            "{resource} under its own topic"
        );
        for other in ["order", "product", "customer", "coupon"] {
            if other == *resource {
                continue;
            }
            for action in ["created", "updated", "deleted"] {
                let topic: &'static str = Box::leak(format!("{other}.{action}").into_boxed_str());
                let r = rejected(topic, body);
                assert_eq!(
                    r.code,
                    RejectCode::WrongResource,
                    "a {resource} under {topic}: {}",
                    r.reason
                );
            }
        }
    }
}
