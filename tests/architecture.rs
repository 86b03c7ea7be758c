//! The layout rules the build checks: the roles meet only through Kafka topics and the shared
//! core, so no role crate depends on another role crate, and the core depends on none of them.
//! An adapter crate (what woostream knows of one outside system) serves roles and depends on
//! the core alone. Only the CLI binary (which runs roles side by side) and the test and bench
//! crates may depend on several roles.

use std::collections::BTreeMap;
use std::process::Command;

const ROLES: &[&str] = &[
    "woostream-producer",
    "woostream-enricher",
    "woostream-sink",
    "woostream-insight",
];
const CORE: &str = "woostream-core";
const ADAPTERS: &[&str] = &["woostream-woo", "woostream-hubspot"];

/// Each workspace crate with the workspace crates it depends on (normal and build
/// dependencies: what ships in the crate).
fn workspace_dependencies() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(woostream_tests::repo_root())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let members: Vec<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null() || d["kind"] == "build")
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| members.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn no_role_depends_on_another_role() {
    let deps = workspace_dependencies();
    for role in ROLES {
        let of_role = deps
            .get(*role)
            .unwrap_or_else(|| panic!("{role} is not in the workspace"));
        let others: Vec<&String> = of_role
            .iter()
            .filter(|d| ROLES.contains(&d.as_str()))
            .collect();
        assert!(
            others.is_empty(),
            "{role} depends on the role crate(s) {others:?}: move what they share into {CORE}"
        );
        assert!(
            of_role.iter().any(|d| d == CORE),
            "{role} should build on {CORE}"
        );
    }
}

#[test]
fn the_core_depends_on_no_role() {
    let deps = workspace_dependencies();
    let core = &deps[CORE];
    assert!(
        core.is_empty(),
        "{CORE} depends on workspace crates {core:?}; it must stand alone"
    );
}

#[test]
fn adapters_depend_on_the_core_alone() {
    let deps = workspace_dependencies();
    for adapter in ADAPTERS {
        let of_adapter = deps
            .get(*adapter)
            .unwrap_or_else(|| panic!("{adapter} is not in the workspace"));
        assert_eq!(
            of_adapter,
            &vec![CORE.to_string()],
            "{adapter} may depend on {CORE} alone: a role or another adapter would tie one outside system to another"
        );
    }
}

/// A module says what it uses: `use super::*` lets a file lean on whatever its parent happens
/// to import, so moving one line breaks another file, and a reader cannot tell where a name
/// comes from. (Test modules may, and so may a small module inline in its parent's file.)
#[test]
fn no_module_imports_its_parent_wholesale() {
    let wholesale: Vec<String> = woostream_tests::shipped_sources()
        .into_iter()
        .filter(|(_, text)| text.lines().any(|l| l == "use super::*;"))
        .map(|(name, _)| name)
        .collect();
    assert!(
        wholesale.is_empty(),
        "`use super::*` outside tests in: {wholesale:?} (import each name)"
    );
}

/// Files stay readable: no file has more than 700 lines of code outside its tests (blank
/// lines and comments not counted). A file that grows past it splits by responsibility.
#[test]
fn no_file_is_over_700_lines_of_code() {
    let long: Vec<(String, usize)> = woostream_tests::shipped_sources()
        .into_iter()
        .map(|(name, text)| {
            let code = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("//"))
                .count();
            (name, code)
        })
        .filter(|(_, code)| *code > 700)
        .collect();
    assert!(long.is_empty(), "files over 700 lines of code: {long:?}");
}
