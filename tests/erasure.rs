//! A person erased in the middle of a flash sale, on a real broker, with every role as its own
//! process: a registered customer (who also ordered as a guest) and a guest erased with
//! `woostream erase`, another customer through WooCommerce's `customer.deleted`. Afterwards an
//! independent reader scans every record of every topic: none of their names, emails, phones or
//! streets is readable anywhere, and every sealed value that names them is under a key the key
//! topic no longer holds. Their CRM contacts are gone, every role left a receipt, and the rest
//! of the sale reached the CRM as if nothing had happened. Before the erasure, the subject
//! export gives back what was sent; after it, nothing personal.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use woostream_core::privacy::CustomerHasher;
use woostream_tests::enricher::{free_port, spawn, woostream_cli, EnricherProcess};
use woostream_tests::hubspot::FakeHubSpot;
use woostream_tests::slack::{ChannelState, FakeSlack};
use woostream_tests::{fixture, python, repo_root, Post, Tansu, SECRET, SOURCE};

struct Person {
    id: i64,
    first: &'static str,
    last: &'static str,
    email: &'static str,
    phone: &'static str,
    street: &'static str,
}

const ROSALIND: Person = Person {
    id: 987_654,
    first: "Rosalind",
    last: "Quixote",
    email: "rosalind.quixote@erase.example",
    phone: "+48 555 010 777",
    street: "12 Wisteria Lane",
};
const GWENDOLYN: Person = Person {
    id: 0,
    first: "Gwendolyn",
    last: "Zabriskie",
    email: "gwendolyn.zabriskie@erase.example",
    phone: "+48 555 020 888",
    street: "7 Juniper Court",
};
const DMITRI: Person = Person {
    id: 876_543,
    first: "Dmitri",
    last: "Vantablack",
    email: "dmitri.vantablack@erase.example",
    phone: "+48 555 030 999",
    street: "3 Obsidian Row",
};

fn other(n: usize) -> Person {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    Person {
        id: if n.is_multiple_of(3) {
            0
        } else {
            10_000 + n as i64
        },
        first: leak(format!("Keeper{n}")),
        last: leak(format!("Stays{n}")),
        email: leak(format!("keeper{n}@stays.example")),
        phone: leak(format!("+48 600 {n:03} 000")),
        street: leak(format!("{n} Stable Street")),
    }
}

fn address(p: &Person, email: bool) -> Value {
    let mut a = json!({
        "first_name": p.first, "last_name": p.last, "company": "",
        "address_1": p.street, "address_2": "", "city": "Kraków", "state": "",
        "postcode": "30-001", "country": "PL", "phone": p.phone,
    });
    if email {
        a["email"] = json!(p.email);
    }
    a
}

/// An order of `p` (as a guest when `guest`), in `status`, of `total`.
fn order(id: i64, p: &Person, guest: bool, status: &str, total: &str, minute: u32) -> Vec<u8> {
    let mut o: Value = serde_json::from_slice(&fixture("woo_order_example.json")).unwrap();
    o["id"] = id.into();
    o["number"] = id.to_string().into();
    o["status"] = status.into();
    o["total"] = total.into();
    o["customer_id"] = (if guest { 0 } else { p.id }).into();
    o["billing"] = address(p, true);
    o["shipping"] = address(p, false);
    let at = format!("2026-11-30T10:{:02}:{:02}", minute / 60, minute % 60);
    o["date_created_gmt"] = at.clone().into();
    o["date_modified_gmt"] = at.into();
    o["date_paid_gmt"] = Value::Null;
    o["refunds"] = json!([]);
    serde_json::to_vec(&o).unwrap()
}

fn account(p: &Person) -> Vec<u8> {
    let mut c: Value = serde_json::from_slice(&fixture("woo_customer_example.json")).unwrap();
    c["id"] = p.id.into();
    c["email"] = p.email.into();
    c["first_name"] = p.first.into();
    c["last_name"] = p.last.into();
    c["username"] = p.email.split('@').next().unwrap().into();
    c["billing"] = address(p, true);
    c["shipping"] = address(p, false);
    serde_json::to_vec(&c).unwrap()
}

async fn deliver(url: &str, topic: &str, body: &[u8]) {
    let (status, answer) = Post::signed(topic, body).send(url).await;
    assert_eq!(status, 200, "{topic}: {answer}");
}

/// Runs `woostream <args> --config <path>`, which must succeed; its output.
fn woostream(args: &[&str], config: &Path) -> String {
    let (ok, text) = woostream_cli(args, config, Duration::from_secs(120));
    assert!(ok, "woostream {args:?}: {text}");
    text
}

/// `woostream export-subject` of a customer (and their guest orders under `email`), read back.
fn export_of(customer: i64, email: Option<&str>, path: &Path, config: &Path) -> Value {
    let id = customer.to_string();
    let out = path.to_str().unwrap();
    let mut args = vec![
        "export-subject",
        "--shop",
        "eu",
        "--customer",
        &id,
        "--out",
        out,
    ];
    if let Some(email) = email {
        args.extend(["--email", email]);
    }
    woostream(&args, config);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
        0o600,
        "the export is readable by its owner only"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn contact_with(hubspot: &FakeHubSpot, property: &str, value: &str) -> bool {
    hubspot.with_store(|s| {
        s.contacts.records.values().any(|c| {
            c.get(property)
                .is_some_and(|v| v.eq_ignore_ascii_case(value))
        })
    })
}

fn deals(hubspot: &FakeHubSpot) -> usize {
    hubspot.with_store(|s| s.deals.records.len())
}

/// Waits until `missing` finds nothing missing; on time out, fails with what still is and the
/// tail of every role's log.
async fn wait_for(
    what: &str,
    limit: Duration,
    roles: &[EnricherProcess],
    mut missing: impl FnMut() -> Vec<String>,
) {
    let deadline = Instant::now() + limit;
    loop {
        let left = missing();
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = roles
                .iter()
                .map(|r| {
                    let text = r.log_text();
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                })
                .collect();
            panic!(
                "not within {limit:?}: {what}; missing {left:?}\n{}",
                logs.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_people_mid_sale_leaves_nothing_readable_about_them_anywhere() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let slack = FakeSlack::start("xoxb-erase", &[("C0ORDERS00", ChannelState::Open)]).await;
    let hubspot = FakeHubSpot::start("pat-erase", 190).await;
    let dir = tempfile::tempdir().unwrap();
    let webhook_port = free_port();
    // The shop's REST API, which confirms a deleted account is gone (it holds no accounts here:
    // every look-up answers 404) before a customer.deleted erases anyone.
    let shop = woostream::shop::ShopServer::start(
        Default::default(),
        "ck_erase",
        "cs_erase",
        woostream::shop::Behaviour::default(),
    )
    .await
    .unwrap();
    let common = |ops_port: u16| {
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n[topics]\npartitions = 3\n\n[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"{SECRET}\"\n[shops.rest]\nurl = \"{}\"\nconsumer_key = \"ck_erase\"\nconsumer_secret = \"cs_erase\"\n\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"\n",
            tansu.bootstrap, shop.url
        )
    };
    let sections = [
        ("producer", format!("[producer]\nlisten = \"127.0.0.1:{webhook_port}\"\n")),
        ("enricher", "[enricher]\nrefit_interval_secs = 0\n".to_string()),
        (
            "slack run",
            format!(
                "[slack]\ntoken = \"xoxb-erase\"\napi_url = \"{}\"\n[[slack.channels]]\nname = \"#orders\"\nid = \"C0ORDERS00\"\n[[slack.rules]]\nname = \"status changes\"\nkinds = [\"order_status_changed\"]\nchannels = [\"#orders\"]\ntemplate = \"status\"\npersonal = [\"first_name_initial\"]\n[slack.templates.status]\ntext = \"Order {{{{ order.number }}}} of {{{{ customer.initial }}}}. is {{{{ order.status }}}}\"\n",
                slack.api_url()
            ),
        ),
        (
            "crm run",
            format!(
                "[crm]\nenabled = true\ntoken = \"pat-erase\"\napi_url = \"{}\"\nmax_delay_ms = 200\nguest_wait_secs = 5\n",
                hubspot.url
            ),
        ),
    ];
    let mut roles: Vec<EnricherProcess> = Vec::new();
    let mut cli_config = None;
    for (role, section) in &sections {
        let port = free_port();
        let toml = format!("{section}\n{}", common(port));
        if cli_config.is_none() {
            let path = dir.path().join("cli.toml");
            std::fs::write(&path, format!("{section}\n{}", common(free_port()))).unwrap();
            cli_config = Some(path);
        }
        roles.push(spawn(role, &toml, "erase", port, dir.path()));
    }
    let cli_config = cli_config.unwrap();
    for r in &mut roles {
        r.ready(Duration::from_secs(180)).await;
    }
    let url = format!("http://127.0.0.1:{webhook_port}/webhooks/woocommerce");

    // The first half of the sale: the three people among others, Rosalind with an account and
    // two orders placed as a guest before it, a malformed delivery of Gwendolyn's kept as a
    // dead letter, and one of Rosalind's orders moving on (a Slack thread).
    deliver(&url, "customer.created", &account(&ROSALIND)).await;
    deliver(&url, "customer.created", &account(&DMITRI)).await;
    let mut order_id = 500_000;
    let mut first_half = 0;
    let mut next = |p: &Person, guest: bool, status: &str, minute: u32| {
        order_id += 1;
        (
            order_id,
            order(order_id, p, guest, status, "120.00", minute),
        )
    };
    let mut rosalind_orders = Vec::new();
    for (i, guest) in [true, true, false, false, false].into_iter().enumerate() {
        let (id, body) = next(&ROSALIND, guest, "processing", i as u32);
        rosalind_orders.push(id);
        deliver(&url, "order.created", &body).await;
        first_half += 1;
    }
    for i in 0..3 {
        let (_, body) = next(&GWENDOLYN, true, "processing", 10 + i);
        deliver(&url, "order.created", &body).await;
        first_half += 1;
    }
    for i in 0..2 {
        let (_, body) = next(&DMITRI, false, "processing", 20 + i);
        deliver(&url, "order.created", &body).await;
        first_half += 1;
    }
    let mut broken: Value =
        serde_json::from_slice(&order(499_999, &GWENDOLYN, true, "processing", "1", 30)).unwrap();
    broken["total"] = "one hundred".into();
    let (status, answer) = Post::signed("order.created", &serde_json::to_vec(&broken).unwrap())
        .send(&url)
        .await;
    assert!(
        status == 200 && answer.contains("dead-lettered"),
        "{status} {answer}"
    );
    for n in 0..60 {
        let p = other(n);
        let (_, body) = next(&p, p.id == 0, "processing", 40 + n as u32);
        deliver(&url, "order.created", &body).await;
        first_half += 1;
    }
    let threaded = rosalind_orders[2];
    let completed = order(threaded, &ROSALIND, false, "completed", "120.00", 200);
    deliver(&url, "order.updated", &completed).await;

    let thread_message = format!("Order {threaded} of R. is completed");
    wait_for(
        "the first half in the CRM and Slack",
        Duration::from_secs(240),
        &roles,
        || {
            let mut missing = Vec::new();
            if deals(&hubspot) < first_half {
                missing.push(format!("deals {} of {first_half}", deals(&hubspot)));
            }
            for e in [ROSALIND.email, GWENDOLYN.email, DMITRI.email] {
                if !contact_with(&hubspot, "email", e) {
                    missing.push(format!("contact {e}"));
                }
            }
            if !contact_with(&hubspot, "woo_orders_count", "3") {
                missing.push("Rosalind's order count".into());
            }
            let posted: Vec<String> = slack.posted().iter().map(|p| p.all_text()).collect();
            if !posted.iter().any(|t| t.contains(&thread_message)) {
                missing.push(format!("Slack: {posted:?}"));
            }
            missing
        },
    )
    .await;
    // Slack showed the initial opened, never a sealed value.
    assert!(slack
        .posted()
        .iter()
        .all(|p| !p.all_text().contains("ws1.") && !p.all_text().contains("ws2.")));

    // The subject export gives back what was sent.
    let export_path = dir.path().join("rosalind.json");
    // Her account alone: its email is not followed into guest orders (anyone can set their
    // account's email to a stranger's).
    let own = export_of(ROSALIND.id, None, &export_path, &cli_config);
    assert_eq!(
        own["customer_keys"],
        json!([ROSALIND.id.to_string()]),
        "{own}"
    );
    let export = export_of(ROSALIND.id, Some(ROSALIND.email), &export_path, &cli_config);
    let hasher = {
        let config = woostream_tests::config(&tansu.bootstrap);
        CustomerHasher::for_shop(&config, "eu")
    };
    let rosalind_guest = format!("guest:{}", hasher.email_hash(ROSALIND.email).unwrap());
    let gwendolyn_guest = format!("guest:{}", hasher.email_hash(GWENDOLYN.email).unwrap());
    assert_eq!(
        export["customer_keys"],
        json!([ROSALIND.id.to_string(), rosalind_guest]),
        "{export}"
    );
    assert_eq!(export["accounts"][0]["email"], ROSALIND.email);
    assert_eq!(export["accounts"][0]["first_name"], ROSALIND.first);
    assert_eq!(
        export["accounts"][0]["billing"]["address_1"],
        ROSALIND.street
    );
    let orders = export["orders"].as_array().unwrap();
    let mut ids: Vec<i64> = orders
        .iter()
        .map(|o| o["order_id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, rosalind_orders, "every order of hers, as a guest too");
    for o in orders {
        assert_eq!(o["billing"]["email"], ROSALIND.email);
        assert_eq!(o["billing"]["last_name"], ROSALIND.last);
        assert_eq!(o["billing"]["phone"], ROSALIND.phone);
        assert_eq!(o["shipping"]["address_1"], ROSALIND.street);
        let total: rust_decimal::Decimal = o["total"].as_str().unwrap().parse().unwrap();
        assert_eq!(total, rust_decimal::Decimal::from(120), "{o}");
        assert_eq!(o["counted_in_profile"], true, "{o}");
    }
    let expected_status = |id: i64| {
        if id == threaded {
            "completed"
        } else {
            "processing"
        }
    };
    assert!(orders
        .iter()
        .all(|o| o["status"] == expected_status(o["order_id"].as_i64().unwrap())));
    let profiles = export["profiles"].as_array().unwrap();
    let counts: Vec<(String, i64)> = profiles
        .iter()
        .map(|p| {
            (
                p["customer_key"].as_str().unwrap().to_string(),
                p["orders_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        counts.contains(&(ROSALIND.id.to_string(), 3))
            && counts.contains(&(rosalind_guest.clone(), 2)),
        "{counts:?}"
    );
    for p in profiles {
        let e = &p["explanation"];
        assert!(
            e["segment"]
                .as_str()
                .unwrap()
                .starts_with(p["segment"].as_str().unwrap()),
            "{p}"
        );
        assert!(e["p_alive"].as_str().unwrap().contains("BG/NBD"));
    }
    assert!(!export["crm"]["contact_ids"].as_array().unwrap().is_empty());
    assert_eq!(
        export["crm"]["deal_ids_by_order"]
            .as_object()
            .unwrap()
            .len(),
        5
    );
    assert!(export["alerts_naming_them"].as_array().unwrap().len() >= 5);
    assert_eq!(export["records_erased"], 0);

    // The erasures: two through the command, one through WooCommerce.
    let erased_r = woostream(
        &[
            "erase",
            "--shop",
            "eu",
            "--customer",
            &ROSALIND.id.to_string(),
            "--email",
            ROSALIND.email,
            "--reason",
            "request 17",
        ],
        &cli_config,
    );
    assert!(
        erased_r.contains("2 customer keys (account, guest orders)"),
        "{erased_r}"
    );
    let erased_g = woostream(
        &["erase", "--shop", "eu", "--email", GWENDOLYN.email],
        &cli_config,
    );
    assert!(
        erased_g.contains("1 customer keys (guest orders)"),
        "{erased_g}"
    );
    deliver(
        &url,
        "customer.deleted",
        format!("{{\"id\": {}}}", DMITRI.id).as_bytes(),
    )
    .await;

    // The rest of the sale goes on.
    let mut second_half = 0;
    for n in 60..120 {
        let p = other(n);
        let (_, body) = next(&p, p.id == 0, "processing", 300 + n as u32);
        deliver(&url, "order.created", &body).await;
        second_half += 1;
    }

    // Every role confirms every erasure.
    let mut status = String::new();
    wait_for(
        "every role's receipt of the three erasures",
        Duration::from_secs(240),
        &roles,
        || {
            status = woostream(&["erase", "--status"], &cli_config);
            if status.matches("erasure er-").count() == 3 && !status.contains("not confirmed") {
                Vec::new()
            } else {
                vec![status.clone()]
            }
        },
    )
    .await;
    assert!(status.contains("request 17"), "{status}");
    assert!(
        status.contains("1 order threads forgotten"),
        "Rosalind's thread: {status}"
    );
    assert!(status.contains("deleted (GDPR delete)"), "{status}");

    let all = first_half + second_half;
    wait_for(
        "the second half in the CRM",
        Duration::from_secs(240),
        &roles,
        || {
            let n = deals(&hubspot);
            if n >= all {
                Vec::new()
            } else {
                vec![format!("deals {n} of {all}")]
            }
        },
    )
    .await;
    for p in [&ROSALIND, &GWENDOLYN, &DMITRI] {
        assert!(
            !contact_with(&hubspot, "email", p.email),
            "{} has no contact",
            p.first
        );
    }
    for id in [ROSALIND.id, DMITRI.id] {
        assert!(!contact_with(
            &hubspot,
            "woo_customer_id",
            &format!("eu:{id}")
        ));
    }
    // A guest's contact carries the email of their orders; a registered customer's only their
    // account's (an order's billing email is whatever the buyer typed), so it is found by id.
    for n in 0..120 {
        let p = other(n);
        let found = if p.id == 0 {
            contact_with(&hubspot, "email", p.email)
        } else {
            contact_with(&hubspot, "woo_customer_id", &format!("eu:{}", p.id))
        };
        assert!(found, "keeper {n} is in the CRM");
    }

    // Nothing readable about them anywhere, as an independent reader sees the broker.
    let mut args = vec![
        repo_root()
            .join("tests/independent/scan_personal.py")
            .display()
            .to_string(),
        "--bootstrap".into(),
        tansu.bootstrap.clone(),
    ];
    for p in [&ROSALIND, &GWENDOLYN, &DMITRI] {
        for needle in [p.first, p.last, p.email, p.phone, p.street] {
            args.extend(["--needle".to_string(), needle.to_string()]);
        }
    }
    for s in [
        ROSALIND.id.to_string(),
        DMITRI.id.to_string(),
        rosalind_guest,
        gwendolyn_guest,
    ] {
        args.extend(["--subject".to_string(), s]);
    }
    args.extend([
        "--all-sealed-in".to_string(),
        "woostream.dlq.ingest".to_string(),
    ]);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(scan["clear"], json!([]), "personal data in clear: {scan}");
    assert!(
        scan["naming"]["woo.orders"].as_u64().unwrap() >= 10,
        "{scan}"
    );
    assert!(
        scan["naming"]["woo.customers"].as_u64().unwrap() >= 2,
        "{scan}"
    );
    assert!(scan["sealed_ids"].as_array().unwrap().len() >= 4, "{scan}");
    assert_eq!(
        scan["live"],
        json!([]),
        "keys of erased people still held: {scan}"
    );
    assert_eq!(
        scan["records"]["woo.orders"].as_u64().unwrap() as usize,
        first_half + second_half + 1,
        "the scan read every order record"
    );

    // Afterwards the export has nothing personal left to give.
    let after = export_of(ROSALIND.id, Some(ROSALIND.email), &export_path, &cli_config);
    assert_eq!(after["accounts"], json!([]), "{after}");
    assert_eq!(after["profiles"], json!([]), "{after}");
    // Her three orders and, through the email given, her two guest orders.
    assert_eq!(after["records_erased"], 5, "{after}");
    for o in after["orders"].as_array().unwrap() {
        assert!(
            o["billing"]["email"].is_null() && o["billing"]["first_name"].is_null(),
            "{o}"
        );
    }

    for r in &mut roles {
        assert_eq!(r.stop().code(), Some(0), "{}", r.log_text());
    }
}
