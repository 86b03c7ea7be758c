//! The documentation's links: every relative link in the repository's Markdown names a file
//! that exists, and every `#anchor` a heading of the page it points into (as GitHub makes
//! anchors). A page moved or a heading renamed without its links fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Markdown a reader of the repository reads: the top-level documents and docs/.
fn pages() -> Vec<PathBuf> {
    let root = repo();
    let mut pages: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "CHANGELOG.md",
        "SECURITY.md",
    ]
    .iter()
    .map(|p| root.join(p))
    .collect();
    pages.extend(woostream_tests::files_under(&root.join("docs"), "md"));
    pages.sort();
    pages
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens, repeats
/// numbered.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(markdown, Options::all()) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let text = heading.take().unwrap_or_default();
                let slug: String = text
                    .to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect();
                let mut candidate = slug.clone();
                let mut n = 1;
                while seen.contains(&candidate) {
                    candidate = format!("{slug}-{n}");
                    n += 1;
                }
                seen.insert(candidate);
            }
            _ => {}
        }
    }
    seen
}

fn links(markdown: &str) -> Vec<String> {
    Parser::new_ext(markdown, Options::all())
        .filter_map(|event| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                Some(dest_url.to_string())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn every_internal_link_and_anchor_resolves() {
    let root = repo().canonicalize().unwrap();
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page
            .strip_prefix(repo())
            .unwrap_or(&page)
            .display()
            .to_string();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            let Ok(target) = target.canonicalize() else {
                broken.push(format!("{name}: {link} (no such file)"));
                continue;
            };
            if !target.starts_with(&root) {
                broken.push(format!("{name}: {link} (outside the repository)"));
                continue;
            }
            if let Some(anchor) = anchor {
                let is_markdown = target.extension().is_some_and(|e| e == "md");
                if is_markdown {
                    let headings = anchors(&std::fs::read_to_string(&target).unwrap());
                    if !headings.contains(anchor) {
                        broken.push(format!("{name}: {link} (no heading with that anchor)"));
                    }
                }
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} links found: is the walk right?"
    );
    assert!(
        broken.is_empty(),
        "{} broken links:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    let a = anchors(
        "# The shop's REST API: history, missed events\n## `[kafka]`\n## Set-up\n## Set-up\n",
    );
    assert!(
        a.contains("the-shops-rest-api-history-missed-events"),
        "{a:?}"
    );
    assert!(a.contains("kafka"), "{a:?}");
    assert!(a.contains("set-up") && a.contains("set-up-1"), "{a:?}");
}

/// Every page but the references is reachable from the README, directly or through another
/// page: a page nobody links to is a page nobody reads.
#[test]
fn every_page_is_linked_from_somewhere() {
    let mut linked = BTreeSet::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for link in links(&text) {
            let path = link.split('#').next().unwrap_or_default();
            if path.is_empty() || link.contains("://") {
                continue;
            }
            if let Ok(t) = page.parent().unwrap().join(path).canonicalize() {
                linked.insert(t);
            }
        }
    }
    let unlinked: Vec<String> = pages()
        .into_iter()
        .filter(|p| !p.ends_with("README.md") || p.parent() != Some(&repo()))
        .filter(|p| !linked.contains(&p.canonicalize().unwrap()))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        unlinked.is_empty(),
        "pages no other page links to: {unlinked:#?}"
    );
}

/// One metric as its source declares it.
#[derive(Debug)]
struct Metric {
    name: String,
    kind: &'static str,
    help: String,
    labels: Vec<String>,
    file: String,
}

/// Every `woostream_*` metric the crates declare: the name and help given to the client
/// library's constructor, its type from the constructor, its labels from the list after it.
fn declared_metrics() -> Vec<Metric> {
    let mut metrics = Vec::new();
    // A name and its help, given to a constructor or to a helper that makes one.
    let declaration =
        regex_lite::Regex::new(r#"(?s)"(woostream_[a-z0-9_]+)",\s*((?:"(?:[^"\\]|\\.)*"\s*)+)"#)
            .unwrap();
    let constant =
        regex_lite::Regex::new(r#"const (\w+): &str = "(woostream_[a-z0-9_]+)";"#).unwrap();
    let kind = regex_lite::Regex::new(r"(Counter|Gauge|Histogram)").unwrap();
    let exposition =
        regex_lite::Regex::new(r"# HELP \{?(\w+)\}? ([^\\]+)\\n# TYPE \{?\w+\}? (\w+)").unwrap();
    let label_name = regex_lite::Regex::new(r#"(\w+)=\\""#).unwrap();
    let labels =
        regex_lite::Regex::new(r#"^[\s),]*(?:\.buckets\([^)]*\)[\s),]*)?&\[([^\]]*)\]"#).unwrap();
    let quoted = regex_lite::Regex::new(r#""((?:[^"\\]|\\.)*)""#).unwrap();
    for (file, mut text) in woostream_tests::shipped_sources() {
        // A name kept in a constant: the constant's uses name it.
        let constants: Vec<(String, String)> = constant
            .captures_iter(&text)
            .map(|c| (c[1].to_string(), c[2].to_string()))
            .collect();
        let names: std::collections::HashMap<String, String> = constants.iter().cloned().collect();
        for (name, value) in constants {
            text = text.replace(&format!("{name},"), &format!("\"{value}\","));
        }
        let text = text.as_str();
        // Written out in the exposition format by hand (`# HELP {NAME} …`).
        for c in exposition.captures_iter(text) {
            let (name, written) = match names.get(&c[1]) {
                Some(name) => (name.clone(), format!("{{{}}}", &c[1])),
                None if c[1].starts_with("woostream_") => (c[1].to_string(), c[1].to_string()),
                None => continue,
            };
            let after = &text[c.get(0).unwrap().end()..];
            let labels = after
                .find(&format!("{written}{{{{"))
                .map(|i| {
                    let rest = &after[i..];
                    let end = rest.find("}}").unwrap_or(rest.len());
                    label_name
                        .captures_iter(&rest[..end])
                        .map(|l| l[1].to_string())
                        .collect()
                })
                .unwrap_or_default();
            metrics.push(Metric {
                name,
                kind: if &c[3] == "counter" {
                    "counter"
                } else {
                    "gauge"
                },
                help: c[2].to_string(),
                labels,
                file: file.clone(),
            });
        }
        for c in declaration.captures_iter(text) {
            let start = c.get(0).unwrap().start();
            // The type: the nearest constructor before the name (in the helper, if one).
            let kind = match kind.find_iter(&text[..start]).last().map(|m| m.as_str()) {
                Some("Counter") => "counter",
                Some("Gauge") => "gauge",
                _ => "histogram",
            };
            let help: String = quoted
                .captures_iter(&c[2])
                .map(|h| h[1].replace("\\\n", "").replace("\\\"", "\""))
                .collect::<Vec<_>>()
                .join("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let after = &text[c.get(0).unwrap().end()..];
            let labels = labels
                .captures(after)
                .map(|l| {
                    l[1].split(',')
                        .map(|s| s.trim().trim_matches('"').to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            metrics.push(Metric {
                name: c[1].to_string(),
                kind,
                help,
                labels,
                file: file.clone(),
            });
        }
    }
    metrics.sort_by(|a, b| a.name.cmp(&b.name));
    metrics.dedup_by(|a, b| a.name == b.name);
    metrics
}

fn metrics_markdown(metrics: &[Metric]) -> String {
    let mut out = String::from(
        "<!-- Generated from the metrics the code declares (WOOSTREAM_WRITE_DOCS=1 cargo test -p woostream-tests --test docs, or make docs); do not edit by hand. -->\n\
         # Metrics\n\n\
         Every metric woostream exports on its ops port (`/metrics`, `ops.listen`), as the code \
         declares it. A role exports its own and the shared ones (Kafka reachability, consumer \
         lag, librdkafka's statistics, `woostream_ready`, `woostream_build_info`). The alerts \
         that read them are in [the runbooks](../runbooks/README.md).\n\n\
         | metric | type | labels | what it counts | declared in |\n|---|---|---|---|---|\n",
    );
    for m in metrics {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | `{}` |\n",
            m.name,
            m.kind,
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", "),
            m.help.replace('|', "\\|"),
            m.file
        ));
    }
    out
}

/// docs/reference/metrics.md is what the code declares; `WOOSTREAM_WRITE_DOCS=1` rewrites it.
#[test]
fn the_metrics_reference_is_current() {
    let metrics = declared_metrics();
    assert!(
        metrics.len() > 60,
        "only {} metrics found: is the scan right?",
        metrics.len()
    );
    for must in [
        "woostream_webhook_requests_total",
        "woostream_consumer_lag",
        "woostream_crm_batch_size",
    ] {
        assert!(metrics.iter().any(|m| m.name == must), "{must} not found");
    }
    let requests = metrics
        .iter()
        .find(|m| m.name == "woostream_webhook_requests_total")
        .unwrap();
    assert_eq!(requests.kind, "counter");
    assert_eq!(requests.labels, ["shop", "topic", "outcome"]);
    let text = metrics_markdown(&metrics);
    let path = repo().join("docs/reference/metrics.md");
    if std::env::var_os("WOOSTREAM_WRITE_DOCS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "docs/reference/metrics.md is stale: run `make docs` and commit it"
    );
}
