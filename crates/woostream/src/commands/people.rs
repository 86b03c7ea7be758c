//! `erase` and `export-subject`: a person's rights (GDPR art. 17 and 15).

use std::path::PathBuf;

use anyhow::Context;
use woostream::subject::{self, Person};
use woostream_core::config::Config;
use woostream_core::telemetry;

use super::bootstrap;

/// Erases a person, or (`status`) prints the erasure receipts.
pub(crate) async fn erase(
    config: Config,
    person: Option<Person>,
    reason: Option<String>,
    status: Option<Option<String>>,
) -> anyhow::Result<()> {
    telemetry::init(&config);
    let bootstrap = bootstrap(&config)?;
    let out = match (status, person) {
        (Some(erasure), _) => subject::status(&config, &bootstrap, erasure.as_deref()).await?,
        (None, Some(person)) => subject::erase(&config, &bootstrap, &person, reason).await?,
        (None, None) => anyhow::bail!("--shop is required"),
    };
    print!("{out}");
    Ok(())
}

/// Everything woostream holds about a person, as one JSON document.
pub(crate) async fn export(
    config: Config,
    person: Person,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    telemetry::init(&config);
    let bootstrap = bootstrap(&config)?;
    let held = subject::held(&config, &bootstrap, &person).await?;
    let text = serde_json::to_string_pretty(&subject::document(&person, &held))?;
    match out {
        // Everything woostream holds about a person: readable by its owner only.
        Some(path) => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all((text + "\n").as_bytes()))
                .with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{text}"),
    }
    Ok(())
}
