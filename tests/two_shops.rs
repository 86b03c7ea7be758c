//! Two shops through one pipeline into one CRM account, on Tansu: the same order number and
//! the same customer id in both shops stay two deals and two contacts, each associated with
//! its own shop's contact, each with its own shop's amount — nothing crosses.

use std::time::{Duration, Instant};

use woostream_hubspot::api::Object;
use woostream_tests::enricher::{free_port, spawn, EnricherProcess};
use woostream_tests::hubspot::FakeHubSpot;
use woostream_tests::{fixture, Post, Tansu};

const SHOPS: [(&str, &str, &str, &str, &str); 2] = [
    (
        "eu",
        "https://eu.shop.example/",
        "eu-webhook-secret",
        "anna@eu.example",
        "29.35",
    ),
    (
        "us",
        "https://us.shop.example/",
        "us-webhook-secret",
        "ben@us.example",
        "77.00",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shops_into_one_crm_account_do_not_cross() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let hubspot = FakeHubSpot::start("pat-two-shops", 190).await;
    let dir = tempfile::tempdir().unwrap();
    let shops: String = SHOPS
        .iter()
        .map(|(id, source, secret, _, _)| {
            format!("[[shops]]\nid = \"{id}\"\nsource = \"{source}\"\nsecret = \"{secret}\"\n")
        })
        .collect();
    let base = |ops: u16| {
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n[ops]\nlisten = \"127.0.0.1:{ops}\"\n[log]\nformat = \"json\"\n{shops}",
            tansu.bootstrap
        )
    };
    let webhook_port = free_port();
    let mut roles: Vec<EnricherProcess> = Vec::new();
    for (role, section) in [
        ("producer", format!("[producer]\nlisten = \"127.0.0.1:{webhook_port}\"\n")),
        ("enricher", String::new()),
        (
            "crm run",
            format!("[crm]\nenabled = true\ntoken = \"pat-two-shops\"\napi_url = \"{}\"\nmax_delay_ms = 500\n", hubspot.url),
        ),
    ] {
        let port = free_port();
        let mut p = spawn(role, &format!("{section}{}", base(port)), "two-shops", port, dir.path());
        p.ready(Duration::from_secs(180)).await;
        roles.push(p);
    }

    // The same order number and a guest in each shop.
    let url = format!("http://127.0.0.1:{webhook_port}/webhooks/woocommerce");
    for (_, source, secret, email, total) in SHOPS {
        let mut order: serde_json::Value =
            serde_json::from_slice(&fixture("woo_order_example.json")).unwrap();
        order["id"] = 5001.into();
        order["number"] = "5001".into();
        order["customer_id"] = 0.into();
        order["billing"]["email"] = email.into();
        order["total"] = total.into();
        let body = serde_json::to_vec(&order).unwrap();
        let post = Post {
            secret: Some(secret),
            source: Some(source),
            ..Post::signed("order.created", &body)
        };
        assert_eq!(post.send(&url).await.0, 200);
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let found = hubspot.with_store(|s| {
            let deals = &s.objects(Object::Deals).records;
            let contacts = &s.objects(Object::Contacts).records;
            SHOPS
                .iter()
                .map(|(shop, _, _, email, total)| {
                    let deal = deals.iter().find(|(_, r)| {
                        r.get("woo_order_id").map(String::as_str) == Some(&format!("{shop}:5001"))
                    })?;
                    let contact = contacts
                        .iter()
                        .find(|(_, r)| r.get("email").map(String::as_str) == Some(email))?;
                    let amount = deal.1.get("amount").cloned().unwrap_or_default();
                    let associated = s.associations.contains(&(*deal.0, *contact.0));
                    Some((
                        amount == *total || amount.parse::<f64>().ok() == total.parse().ok(),
                        associated,
                    ))
                })
                .collect::<Option<Vec<(bool, bool)>>>()
        });
        if let Some(found) = &found {
            if found
                .iter()
                .all(|(amount, associated)| *amount && *associated)
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the CRM did not get each shop's deal with its own amount and contact: {found:?}; deals {:?}",
            hubspot.with_store(|s| s.objects(Object::Deals).records.clone())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    hubspot.with_store(|s| {
        assert_eq!(
            s.objects(Object::Deals).records.len(),
            2,
            "one deal per shop"
        );
        assert_eq!(
            s.objects(Object::Contacts).records.len(),
            2,
            "one contact per shop's guest"
        );
    });
    for mut p in roles {
        p.stop();
    }
}
