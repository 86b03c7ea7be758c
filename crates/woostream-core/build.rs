//! Compiles every released version of every contract schema (`schemas/history/<name>/
//! <fingerprint>.avsc`) into the core, so a build reads whatever an older build wrote.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let history = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/history");
    println!("cargo:rerun-if-changed={}", history.display());
    let mut entries = Vec::new();
    for contract in std::fs::read_dir(&history).expect("schemas/history") {
        let contract = contract.expect("schemas/history entry").path();
        println!("cargo:rerun-if-changed={}", contract.display());
        let name = contract.file_name().unwrap().to_string_lossy().into_owned();
        for version in std::fs::read_dir(&contract).expect("a schema's history") {
            let version = version.expect("schemas/history entry").path();
            if version.extension().is_some_and(|e| e == "avsc") {
                let fingerprint = version.file_stem().unwrap().to_string_lossy().into_owned();
                entries.push((name.clone(), fingerprint, version.canonicalize().unwrap()));
            }
        }
    }
    entries.sort();
    let mut out = String::from(
        "/// Every released version of every contract: (contract, fingerprint as in the file name, text).\npub const SCHEMA_HISTORY: &[(&str, &str, &str)] = &[\n",
    );
    for (name, fingerprint, path) in entries {
        writeln!(
            out,
            "    ({name:?}, {fingerprint:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("schema_history.rs");
    std::fs::write(dest, out).expect("writing schema_history.rs");
}
