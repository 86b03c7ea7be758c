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
use woostream_core::codec::Decoder;
use woostream_core::events::{CustomerEvent, Origin};
use woostream_producer::crm_inbound::signature::sign;
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
    let (webhook_port, inbound_port) = (free_port(), free_port());
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
    let inbound_url = format!("http://127.0.0.1:{inbound_port}/webhooks/hubspot");
    let dir = tempfile::tempdir().unwrap();
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
            "inbound",
            port,
            dir.path(),
        ));
    }
    for r in &mut roles {
        r.ready(Duration::from_secs(180)).await;
    }
    // The app's subscription: HubSpot reports every change of these properties — the team's
    // in its UI, and woostream's own writes (INTEGRATION, this app).
    hubspot.subscribe(Subscription {
        url: inbound_url.clone(),
        client_secret: CLIENT_SECRET.into(),
        app_id: APP_ID.into(),
        properties: ["firstname", "lastname", "phone", "email", "woo_note"]
            .map(String::from)
            .to_vec(),
    });

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
    // HubSpot's retry of the phone change, and the teammate's older change.
    assert_eq!(
        counted("woostream_shop_writer_changes_total{outcome=\"skipped\"}"),
        2.0
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
