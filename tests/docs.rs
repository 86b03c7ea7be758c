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
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
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
