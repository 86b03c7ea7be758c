//! The CRM talking back, on a real broker with every role as its own process: a phone number
//! corrected in HubSpot reaches the WooCommerce customer exactly once (HubSpot's retry of the
//! same event included); forged, stale and unsigned requests are refused; neither direction
//! echoes — the shop's webhook about what woostream wrote from the CRM does not go back to the
//! CRM, and HubSpot's report of woostream's own write does not come back to the shop; and a
//! CRM change older than the shop's own later edit loses to it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use woostream::shop::{Behaviour, ShopServer};
use woostream_core::contract::codec::Decoder;
use woostream_core::contract::events::{CustomerEvent, Origin};
use woostream_hubspot::signature::sign;
use woostream_tests::enricher::{free_port, spawn, EnricherProcess};
use woostream_tests::hubspot::{FakeHubSpot, Subscription};
use woostream_tests::{config, fixture, read_topic_now, Post, Tansu, SECRET, SOURCE};

const CLIENT_SECRET: &str = "hubspot-app-client-secret";
const APP_ID: &str = "4711";
const CUSTOMER: i64 = 4242;

fn customer() -> Value {
    let mut c: Value = serde_json::from_slice(&fixture("woo_customer_example.json")).unwrap();
    c["id"] = CUSTOMER.into();
    c["email"] = "ines.ortega@crm.example".into();
    c["first_name"] = "Ines".into();
    c["last_name"] = "Ortega".into();
    c["billing"]["first_name"] = "Ines".into();
    c["billing"]["last_name"] = "Ortega".into();
    c["billing"]["email"] = "ines.ortega@crm.example".into();
    c["billing"]["phone"] = "+48 100 200 300".into();
    c["meta_data"] = json!([]);
    c
}

/// A HubSpot `contact.propertyChange` event.
fn event(
    id: i64,
    contact: &str,
    property: &str,
    value: &str,
    source: (&str, &str),
    at: i64,
) -> Value {
    json!({
        "eventId": id, "subscriptionId": 7001, "portalId": 62515, "appId": 4711,
        "occurredAt": at, "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
        "objectId": contact.parse::<i64>().unwrap(), "propertyName": property,
        "propertyValue": value, "changeSource": source.0, "sourceId": source.1,
    })
}

/// Posts HubSpot's request, signed with `secret` at `timestamp` (ms); the status.
async fn hubspot_posts(url: &str, events: &[Value], secret: Option<&str>, timestamp: i64) -> u16 {
    let body = serde_json::to_vec(events).unwrap();
    let ts = timestamp.to_string();
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-hubspot-request-timestamp", &ts);
    if let Some(secret) = secret {
        request = request.header(
            "x-hubspot-signature-v3",
            sign(secret, "POST", url, &body, &ts),
        );
    }
    request.body(body).send().await.unwrap().status().as_u16()
}

async fn wait_for(what: &str, roles: &[EnricherProcess], mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !done() {
        if Instant::now() > deadline {
            let logs: Vec<String> = roles.iter().map(|r| r.log_text()).collect();
            panic!("not within 3 minutes: {what}\n{}", logs.join("\n----\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn contact_upserts(hubspot: &FakeHubSpot) -> usize {
    hubspot
        .requests()
        .iter()
        .filter(|r| r.endpoint == "contacts/batch/upsert" && r.status == 200)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_change_reaches_the_shop_once_and_neither_direction_echoes() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let hubspot = FakeHubSpot::start("pat-inbound", 190).await;
    let webhook_port = free_port();
    let producer_url = format!("http://127.0.0.1:{webhook_port}/webhooks/woocommerce");
    let shop = ShopServer::start(
        BTreeMap::from([(
            "customers".to_string(),
            BTreeMap::from([(CUSTOMER, customer())]),
        )]),
        "ck_inbound",
        "cs_inbound",
        Behaviour {
            customer_webhook: Some((producer_url.clone(), SECRET.into(), SOURCE.into())),
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The app's subscription: HubSpot reports every change of these properties — the team's
    // in its UI, and woostream's own writes (INTEGRATION, this app).
    let (mut roles, _, inbound_url) = start_roles(
        &tansu,
        &shop,
        &hubspot,
        webhook_port,
        dir.path(),
        &["firstname", "lastname", "phone", "email", "woo_note"],
    )
    .await;

    // The customer signs up in the shop; the CRM sink makes the contact.
    let body = serde_json::to_vec(&customer()).unwrap();
    let (status, answer) = Post::signed("customer.created", &body)
        .send(&producer_url)
        .await;
    assert_eq!(status, 200, "{answer}");
    let contact_id = || {
        hubspot.with_store(|s| {
            s.contacts.records.iter().find_map(|(id, c)| {
                (c.get("woo_customer_id").map(String::as_str) == Some("eu:4242"))
                    .then(|| id.to_string())
            })
        })
    };
    wait_for("the contact in HubSpot", &roles, || contact_id().is_some()).await;
    let contact = contact_id().unwrap();

    // The team corrects the phone in HubSpot's UI; HubSpot delivers the event, then again (a
    // retry of the same event).
    assert_eq!(
        hubspot
            .edit_contact(&contact, "phone", "+48 999 888 777")
            .await,
        Some(200)
    );
    assert_eq!(hubspot.redeliver_last().await, Some(200));
    wait_for("the phone in the shop", &roles, || {
        shop.get("customers", CUSTOMER).unwrap()["billing"]["phone"] == "+48 999 888 777"
    })
    .await;

    // The shop's webhook about that write comes back to the producer, marked as the CRM's.
    let mut config = config(&tansu.bootstrap);
    config.topics.create = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut round = 0;
    let records = loop {
        round += 1;
        let records = read_topic_now(&config, &format!("reader-{round}"), "woo.customers").await;
        if records.len() >= 2 {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "the shop's webhook about the write never reached Kafka"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    use rdkafka::Message;
    let origins: Vec<Origin> = records
        .iter()
        .filter_map(|m| Decoder::new().decode::<CustomerEvent>(m.payload()?).ok())
        .map(|e| e.envelope.origin)
        .collect();
    assert_eq!(origins, vec![Origin::Webhook, Origin::Crm]);

    // The shop's own edit afterwards (a new last name) goes to the CRM — and it is the only
    // contact write since the CRM's change: the CRM-origin webhook went nowhere.
    let upserts_before = contact_upserts(&hubspot);
    tokio::time::sleep(Duration::from_millis(1100)).await; // a later modification second
    let mut edited = shop.get("customers", CUSTOMER).unwrap();
    edited["last_name"] = "Ortega-Lind".into();
    edited["date_modified_gmt"] = Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string().into();
    shop.put("customers", edited.clone());
    let body = serde_json::to_vec(&edited).unwrap();
    assert_eq!(
        Post::signed("customer.updated", &body)
            .send(&producer_url)
            .await
            .0,
        200
    );
    wait_for("the shop's edit in HubSpot", &roles, || {
        hubspot.with_store(|s| {
            s.contacts
                .records
                .values()
                .any(|c| c.get("lastname").map(String::as_str) == Some("Ortega-Lind"))
        })
    })
    .await;
    assert_eq!(
        contact_upserts(&hubspot),
        upserts_before + 1,
        "{:?}",
        hubspot.requests()
    );

    // HubSpot reports woostream's own write (INTEGRATION, this app); a teammate's older phone
    // change arrives late; forged, stale and unsigned requests arrive. None reaches the shop.
    let later = Utc::now().timestamp_millis();
    let own = event(
        2,
        &contact,
        "lastname",
        "Ortega-Lind",
        ("INTEGRATION", APP_ID),
        later,
    );
    let stale_change = event(
        3,
        &contact,
        "phone",
        "+48 111 111 111",
        ("CRM_UI", "userId:31"),
        later - 60_000,
    );
    assert_eq!(
        hubspot_posts(
            &inbound_url,
            &[own, stale_change],
            Some(CLIENT_SECRET),
            later
        )
        .await,
        200
    );
    let forged = event(
        4,
        &contact,
        "phone",
        "+48 666 666 666",
        ("CRM_UI", "userId:31"),
        later,
    );
    assert_eq!(
        hubspot_posts(
            &inbound_url,
            std::slice::from_ref(&forged),
            Some("not the secret"),
            later
        )
        .await,
        401
    );
    assert_eq!(
        hubspot_posts(
            &inbound_url,
            std::slice::from_ref(&forged),
            Some(CLIENT_SECRET),
            later - 6 * 60_000
        )
        .await,
        401,
        "signed six minutes ago"
    );
    assert_eq!(
        hubspot_posts(&inbound_url, std::slice::from_ref(&forged), None, later).await,
        401
    );

    // A note then goes through: everything before it was handled (one customer, in order).
    assert_eq!(
        hubspot
            .edit_contact(&contact, "woo_note", "call back on Tuesday")
            .await,
        Some(200)
    );
    wait_for("the note in the shop", &roles, || {
        shop.get("customers", CUSTOMER).unwrap()["meta_data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["key"] == "woostream_crm_note" && m["value"] == "call back on Tuesday")
    })
    .await;
    let inbound = &roles[2];
    let counted = |name: &str| inbound.metric(name);
    // Every report of woostream's own writes (the contact's creation, the shop's edit, and the
    // hand-made one above) was answered and dropped at the door.
    let own: Vec<(Value, u16)> = hubspot
        .delivered()
        .into_iter()
        .filter(|(events, _)| events[0]["changeSource"] == "INTEGRATION")
        .collect();
    assert!(own.len() >= 2, "the creation and the shop's edit: {own:?}");
    assert!(own.iter().all(|(_, status)| *status == 200), "{own:?}");
    let own_events: usize = own.iter().map(|(e, _)| e.as_array().unwrap().len()).sum();
    assert_eq!(
        counted("woostream_crm_inbound_events_total{outcome=\"own_write\"}"),
        own_events as f64 + 1.0
    );
    assert_eq!(counted("woostream_crm_inbound_refused_total"), 3.0);
    assert_eq!(
        counted("woostream_shop_writer_changes_total{outcome=\"written\"}"),
        2.0
    );
    // HubSpot's retry of the phone change is dropped at the door; the teammate's older
    // change loses to the shop's later edit.
    assert_eq!(
        counted("woostream_crm_inbound_events_total{outcome=\"duplicate\"}"),
        1.0
    );
    assert_eq!(
        counted("woostream_shop_writer_changes_total{outcome=\"skipped\"}"),
        1.0
    );
    let updates = shop.customer_updates();
    assert_eq!(updates.len(), 2, "the phone once and the note: {updates:?}");
    let now_in_shop = shop.get("customers", CUSTOMER).unwrap();
    assert_eq!(now_in_shop["billing"]["phone"], "+48 999 888 777");
    assert_eq!(now_in_shop["last_name"], "Ortega-Lind");

    for r in &mut roles {
        assert_eq!(r.stop().code(), Some(0), "{}", r.log_text());
    }
}

/// Starts producer, CRM sink and CRM inbound as processes against `shop` and `hubspot`, and
/// subscribes the app to changes of `subscribed`; the roles, the producer's URL and the
/// inbound URL.
async fn start_roles(
    tansu: &Tansu,
    shop: &ShopServer,
    hubspot: &FakeHubSpot,
    webhook_port: u16,
    dir: &std::path::Path,
    subscribed: &[&str],
) -> (Vec<EnricherProcess>, String, String) {
    let inbound_port = free_port();
    let producer_url = format!("http://127.0.0.1:{webhook_port}/webhooks/woocommerce");
    let inbound_url = format!("http://127.0.0.1:{inbound_port}/webhooks/hubspot");
    let common = |ops: u16| {
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n\n[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"{SECRET}\"\n[shops.rest]\nurl = \"{}\"\nconsumer_key = \"ck_inbound\"\nconsumer_secret = \"cs_inbound\"\n\n[ops]\nlisten = \"127.0.0.1:{ops}\"\n",
            tansu.bootstrap, shop.url
        )
    };
    let crm = format!(
        "[crm]\nenabled = true\ntoken = \"pat-inbound\"\napi_url = \"{}\"\nmax_delay_ms = 100\n[crm.inbound]\nlisten = \"127.0.0.1:{inbound_port}\"\npublic_url = \"{inbound_url}\"\nclient_secret = \"{CLIENT_SECRET}\"\napp_id = \"{APP_ID}\"\n",
        hubspot.url
    );
    let mut roles = Vec::new();
    for (role, section) in [
        (
            "producer",
            format!("[producer]\nlisten = \"127.0.0.1:{webhook_port}\"\n"),
        ),
        ("crm run", crm.clone()),
        ("crm inbound", crm.clone()),
    ] {
        let port = free_port();
        roles.push(spawn(
            role,
            &format!("{section}\n{}", common(port)),
            "takeover",
            port,
            dir,
        ));
    }
    for r in &mut roles {
        r.ready(Duration::from_secs(180)).await;
    }
    // The CRM inbound role says whether it reaches Kafka.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while roles[2].metric_with("woostream_kafka_reachable", &[("role", "crm-inbound")]) != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            roles[2].metrics_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    hubspot.subscribe(Subscription {
        url: inbound_url.clone(),
        client_secret: CLIENT_SECRET.into(),
        app_id: APP_ID.into(),
        properties: subscribed.iter().map(|p| p.to_string()).collect(),
    });
    (roles, producer_url, inbound_url)
}

/// The contact whose `property` is `value`, with its properties.
fn contact_where(
    hubspot: &FakeHubSpot,
    property: &str,
    value: &str,
) -> Option<(String, BTreeMap<String, String>)> {
    hubspot.with_store(|s| {
        s.contacts
            .records
            .iter()
            .find(|(_, c)| c.get(property).map(String::as_str) == Some(value))
            .map(|(id, c)| (id.to_string(), c.clone()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_typing_someone_elses_email_takes_over_no_contact_and_erasing_them_spares_it() {
    use woostream_hubspot::api::{Input, Object};
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let hubspot = FakeHubSpot::start("pat-inbound", 190).await;
    // Two people the CRM knows: Vera, another customer's contact; Walt, from a form.
    let vera = "vera@victim.example";
    let walt = "walt@victim.example";
    hubspot.with_store(|s| {
        let input = |email: &str, props: &[(&str, &str)]| Input {
            id_property: "email".into(),
            id: email.into(),
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain([("email".to_string(), email.to_string())])
                .collect(),
        };
        s.upsert(
            Object::Contacts,
            &[
                input(
                    vera,
                    &[
                        ("firstname", "Vera"),
                        ("phone", "+1 555 0100"),
                        ("woo_customer_id", "eu:7"),
                    ],
                ),
                input(walt, &[("firstname", "Walt")]),
            ],
        )
        .unwrap();
    });
    let before = |email: &str| contact_where(&hubspot, "email", email).unwrap();
    let (vera_before, walt_before) = (before(vera), before(walt));

    // The attacker's account carries Vera's email (WooCommerce does not check it is theirs).
    let mut attacker = customer();
    attacker["email"] = vera.into();
    attacker["billing"]["email"] = vera.into();
    attacker["first_name"] = "Mallory".into();
    let webhook_port = free_port();
    let shop = ShopServer::start(
        BTreeMap::from([(
            "customers".to_string(),
            BTreeMap::from([(CUSTOMER, attacker.clone())]),
        )]),
        "ck_inbound",
        "cs_inbound",
        Behaviour::default(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut roles, producer_url, _) = start_roles(
        &tansu,
        &shop,
        &hubspot,
        webhook_port,
        dir.path(),
        &["firstname", "phone"],
    )
    .await;

    // 1. The account: HubSpot refuses the email (Vera's contact has it); Vera's contact names
    // another customer, so nothing is written onto it: a dead letter says why.
    let body = serde_json::to_vec(&attacker).unwrap();
    assert_eq!(
        Post::signed("customer.created", &body)
            .send(&producer_url)
            .await
            .0,
        200
    );
    let crm = &roles[1];
    wait_for("the account's refusal", &roles, || {
        crm.metric_with(
            "woostream_crm_upserts_total",
            &[("object", "contact"), ("outcome", "dead_lettered")],
        ) >= 1.0
    })
    .await;
    let mut config = config(&tansu.bootstrap);
    config.topics.create = false;
    use rdkafka::message::Headers;
    use rdkafka::Message;
    // The dead letter is written once the refusal is counted: read until it is there.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    let reasons: Vec<String> = loop {
        round += 1;
        let dead = read_topic_now(
            &config,
            &format!("takeover-dlq-{round}"),
            "woostream.dlq.crm",
        )
        .await;
        let reasons: Vec<String> = dead
            .iter()
            .filter_map(|m| {
                m.headers()?
                    .iter()
                    .find(|h| h.key == woostream_core::headers::DEAD_LETTER_REASON)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).to_string())
            })
            .collect();
        if !reasons.is_empty() || Instant::now() > deadline {
            break reasons;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("email_belongs_to_another_customer")),
        "{reasons:?}"
    );

    // 2. An order whose billing email is Walt's: the attacker's own contact gets the deal;
    // Walt's contact is not touched.
    let mut order: Value = serde_json::from_slice(&fixture("woo_order_example.json")).unwrap();
    order["customer_id"] = CUSTOMER.into();
    order["billing"]["email"] = walt.into();
    order["status"] = "processing".into();
    let body = serde_json::to_vec(&order).unwrap();
    assert_eq!(
        Post::signed("order.created", &body)
            .send(&producer_url)
            .await
            .0,
        200
    );
    wait_for("the attacker's own contact", &roles, || {
        contact_where(&hubspot, "woo_customer_id", "eu:4242").is_some()
    })
    .await;
    let (own, own_record) = contact_where(&hubspot, "woo_customer_id", "eu:4242").unwrap();
    assert_ne!(own, vera_before.0);
    assert_ne!(own, walt_before.0);
    assert_eq!(own_record.get("email"), None, "{own_record:?}");
    assert_eq!(before(vera), vera_before, "Vera's contact is unchanged");
    assert_eq!(before(walt), walt_before, "Walt's contact is unchanged");

    // 3. A change on Vera's contact never reaches a shop account: woostream never wrote it for
    // anyone — not even after a form sets the attacker's id on it.
    assert_eq!(
        hubspot
            .edit_contact(&vera_before.0, "phone", "+1 555 0199")
            .await,
        Some(200)
    );
    hubspot.with_store(|s| {
        let id: u64 = vera_before.0.parse().unwrap();
        s.contacts
            .records
            .get_mut(&id)
            .unwrap()
            .insert("woo_customer_id".into(), "eu:4242".into());
    });
    assert_eq!(
        hubspot
            .edit_contact(&vera_before.0, "firstname", "Mallory")
            .await,
        Some(200)
    );
    let inbound = &roles[2];
    assert_eq!(
        inbound.metric("woostream_crm_inbound_events_total{outcome=\"not_woostreams_contact\"}"),
        2.0
    );
    assert!(
        shop.customer_updates().is_empty(),
        "{:?}",
        shop.customer_updates()
    );
    hubspot.with_store(|s| {
        let id: u64 = vera_before.0.parse().unwrap();
        s.contacts
            .records
            .get_mut(&id)
            .unwrap()
            .insert("woo_customer_id".into(), "eu:7".into());
    });

    // 4. The attacker's account is deleted: their own contact goes, Vera's and Walt's stay.
    shop.remove("customers", CUSTOMER);
    let deleted = serde_json::to_vec(&json!({"id": CUSTOMER})).unwrap();
    assert_eq!(
        Post::signed("customer.deleted", &deleted)
            .send(&producer_url)
            .await
            .0,
        200
    );
    wait_for("the attacker's contact erased", &roles, || {
        hubspot.with_store(|s| {
            !s.contacts
                .records
                .contains_key(&own.parse::<u64>().unwrap())
        })
    })
    .await;
    assert!(
        contact_where(&hubspot, "email", vera).is_some(),
        "Vera's contact stays"
    );
    assert!(
        contact_where(&hubspot, "email", walt).is_some(),
        "Walt's contact stays"
    );

    for r in &mut roles {
        assert_eq!(r.stop().code(), Some(0), "{}", r.log_text());
    }
}
