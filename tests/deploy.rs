//! What a platform team installs, checked without a cluster or a registry: the Helm chart
//! (rendered by Helm's Go SDK, linted, every object validated against Kubernetes' and the CRDs'
//! schemas, every rendered configuration accepted by `woostream check-config`), the alert rules
//! (promtool, and a real Prometheus scraping a running producer until an alert fires), and the
//! container image's Dockerfile (hadolint, and a runtime stage that carries every shared library
//! the binary links).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use woostream_tests::enricher::{free_port, spawn, woostream_bin};
use woostream_tests::{python, repo_root, Post, Tansu, SOURCE};

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {program} (make test installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?}:\n{text}");
    text
}

fn venv_tool(name: &str) -> String {
    let python = python();
    match Path::new(&python).parent() {
        Some(bin) if bin.join(name).exists() => bin.join(name).display().to_string(),
        _ => name.to_string(),
    }
}

#[test]
fn the_chart_renders_lints_and_validates_and_every_configuration_it_renders_is_accepted() {
    let root = repo_root();
    let bin = woostream_bin();
    let report = run(
        &python(),
        &[
            "tests/deploy/check_chart.py",
            root.to_str().unwrap(),
            bin.to_str().unwrap(),
        ],
        &root,
    );
    println!("{report}");
    assert!(report.contains("chart OK"), "{report}");
}

#[test]
fn the_alert_rules_pass_promtool_and_fire_on_the_series_they_are_for() {
    let root = repo_root();
    let checked = run(
        "promtool",
        &["check", "rules", "deploy/helm/woostream/files/alerts.yaml"],
        &root,
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run(
        "promtool",
        &["test", "rules", "alerts_test.yaml"],
        &root.join("tests/deploy"),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn the_dockerfile_passes_hadolint_builds_with_make_release_and_ships_every_library_the_binary_links(
) {
    let root = repo_root();
    run(&venv_tool("hadolint"), &["Dockerfile"], &root);
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    // The build stage is the repository's own release build, not a copy of its commands.
    assert!(
        dockerfile.contains("RUN WOOSTREAM_REVISION=\"${REVISION}\" make release"),
        "{dockerfile}"
    );
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    assert!(
        makefile.contains("release: build-packages\n\t$(CARGO) build --release --locked -p woostream --bin woostream"),
        "the Makefile's release target"
    );
    assert!(dockerfile.contains("USER 10001"), "runs as a non-root user");
    assert!(
        !dockerfile
            .lines()
            .any(|l| l.trim_start().starts_with("HEALTHCHECK")),
        "Kubernetes probes instead"
    );

    // Labelled with what it is, which release and which revision (OCI annotations); the
    // revision reaches the binary too.
    for label in [
        "org.opencontainers.image.title",
        "org.opencontainers.image.licenses=\"Apache-2.0\"",
        "org.opencontainers.image.source",
        "org.opencontainers.image.version=\"${VERSION}\"",
        "org.opencontainers.image.revision=\"${REVISION}\"",
    ] {
        assert!(dockerfile.contains(label), "no {label} in the Dockerfile");
    }
    // Base images named once, pinnable by digest.
    assert!(
        dockerfile.contains("\nARG RUNTIME_IMAGE=debian:bookworm-slim")
            && dockerfile.contains("\nFROM ${RUST_IMAGE} AS build")
            && dockerfile.contains("\nFROM ${RUNTIME_IMAGE}\n"),
        "{dockerfile}"
    );

    // The runtime stage's packages: what it installs, and what debian:bookworm-slim has.
    let runtime = dockerfile
        .split("FROM ${RUNTIME_IMAGE}")
        .nth(1)
        .expect("a debian:bookworm-slim runtime stage");
    let installed: BTreeSet<String> = runtime
        .split("--no-install-recommends")
        .nth(1)
        .expect("an apt-get install in the runtime stage")
        .split(['\\', '&'])
        .next()
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .chain(
            ["libc6", "libgcc-s1", "zlib1g", "libzstd1"]
                .iter()
                .map(|s| s.to_string()),
        )
        .collect();
    assert!(installed.contains("ca-certificates"), "{installed:?}");
    let bin = woostream_bin();
    let dynamic = run("readelf", &["-d", bin.to_str().unwrap()], &root);
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(
        needed.contains(&"libssl.so.3"),
        "linked to OpenSSL: {needed:?}"
    );
    for library in needed {
        let owner = run("dpkg", &["-S", library], &root);
        let packages: Vec<&str> = owner.lines().filter_map(|l| l.split(':').next()).collect();
        assert!(
            packages.iter().any(|p| installed.contains(*p)),
            "{library} comes from {packages:?}, which the runtime stage does not install ({installed:?})"
        );
    }
}

/// The rules the chart's PrometheusRule carries for a release that runs only the producer
/// (scoped to its namespace and instance label), with their `for` durations shortened so
/// that an alert fires within the test; the expressions are the ones shipped.
fn rules_firing_at_once() -> String {
    let root = repo_root();
    let rendered = Command::new(python())
        .args([
            "tests/deploy/render_rules.py",
            root.to_str().unwrap(),
            "woostream",
            "shop",
        ])
        .current_dir(&root)
        .output()
        .expect("rendering the chart's rules");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    String::from_utf8(rendered.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("for:") {
                l.split("for:").next().unwrap().to_string() + "for: 0s"
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn alerts(prometheus: &str) -> Vec<serde_json::Value> {
    let Ok(resp) = reqwest::get(format!("{prometheus}/api/v1/alerts")).await else {
        return Vec::new();
    };
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    body["data"]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn query(prometheus: &str, q: &str) -> Option<f64> {
    let resp = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = resp.json().await.ok()?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_the_producer_fires_the_signature_alert_on_a_burst_of_forgeries()
{
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (webhook_port, ops_port) = (free_port(), free_port());
    let toml = format!(
        "[producer]\nlisten = \"127.0.0.1:{webhook_port}\"\n[kafka]\nbootstrap_servers = \"{}\"\n[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"the-real-secret-of-eu\"\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"\n",
        tansu.bootstrap
    );
    let mut producer = spawn("producer", &toml, "alerting", ops_port, dir.path());
    producer.ready(Duration::from_secs(120)).await;

    std::fs::write(dir.path().join("alerts.yaml"), rules_firing_at_once()).unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: [alerts.yaml]\nscrape_configs:\n  - job_name: woostream\n    static_configs:\n      - targets: [\"127.0.0.1:{ops_port}\"]\n        labels: {{ container: producer, pod: producer-0, namespace: shop, app_kubernetes_io_instance: woostream }}\n"
        ),
    )
    .unwrap();
    let prometheus_port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut server = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting prometheus (make test installs it)");
    let prometheus = format!("http://127.0.0.1:{prometheus_port}");

    // Scraped and healthy first: the producer is ready and nothing fires.
    let deadline = Instant::now() + Duration::from_secs(60);
    while query(&prometheus, "woostream_ready").await != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the producer"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let firing = |alerts: &[serde_json::Value]| -> Vec<String> {
        alerts
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| a["labels"]["alertname"].as_str().unwrap_or("").to_string())
            .collect()
    };
    // The producer's absence alert fires until the rules are evaluated after the first
    // scrape (its `for` is shortened to 0 s here); then it resolves and nothing fires.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = firing(&alerts(&prometheus).await);
        if now.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline && now == ["WoostreamRoleAbsent"],
            "firing while healthy: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A burst of forged deliveries: signed with a secret that is not the shop's.
    let body = br#"{"id":1}"#;
    let url = format!("http://127.0.0.1:{webhook_port}/webhooks/woocommerce");
    for _ in 0..300 {
        let post = Post {
            secret: Some("a-guessed-secret"),
            ..Post::signed("order.created", body)
        };
        assert_eq!(post.send(&url).await.0, 401);
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    let fired = loop {
        let now = alerts(&prometheus).await;
        if let Some(a) = now.iter().find(|a| {
            a["state"] == "firing"
                && a["labels"]["alertname"] == "WoostreamWebhookSignatureFailures"
        }) {
            break a.clone();
        }
        if Instant::now() >= deadline {
            let rate = query(
                &prometheus,
                "sum by (shop) (rate(woostream_webhook_signature_failures_total[5m]))",
            )
            .await;
            let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap();
            panic!("the signature alert did not fire: {now:?}; failures/s {rate:?}\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("fired: {fired}");
    assert_eq!(fired["labels"]["shop"], "eu");
    assert_eq!(fired["labels"]["severity"], "warning");
    // Forgeries naming the shop while none of its deliveries pass: the signature alert, and
    // the probe alert for the same posts (info), nothing else.
    let now = firing(&alerts(&prometheus).await);
    assert!(
        now.iter().all(|a| [
            "WoostreamWebhookSignatureFailures",
            "WoostreamWebhookProbed"
        ]
        .contains(&a.as_str())),
        "only the alerts that were provoked: {now:?}"
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(producer.stop().code(), Some(0), "{}", producer.log_text());
}
