//! `woostream`: every role as a subcommand, the all-in-one mode and the flash-sale simulator.
//! The commands are `cli.rs`; what each does is `commands/`.

mod cli;
mod commands;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::{load, Cli, Command, CrmCommand, SpoolCommand, WebhooksCommand};
use commands::{contract, demo, history, models, people, roles};

// The enricher allocates and frees many small strings and vectors per record; glibc's malloc
// took a fifth of its CPU in a profile of `make bench-enrich`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    woostream_core::ops::set_revision(env!("WOOSTREAM_REVISION"));
    let result = run(Cli::parse().command).await;
    // The last spans of a role that is stopping, before the process ends.
    tokio::task::spawn_blocking(woostream_core::traces::flush)
        .await
        .ok();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("woostream: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Producer { config } => roles::producer(config.load()?).await,
        Command::Enricher { config } => roles::enricher(config.load()?).await,
        Command::Insight { config } => roles::insight(config.load()?).await,
        Command::Rest { config, once } => roles::rest(config.load()?, once).await,
        Command::Slack { command } => roles::slack(command).await,
        Command::Crm {
            command: CrmCommand::Run { config },
        } => roles::crm(config.load()?).await,
        Command::Crm {
            command: CrmCommand::Inbound { config },
        } => roles::crm_inbound(config.load()?).await,
        Command::Crm {
            command: CrmCommand::Setup { config },
        } => history::crm_setup(config.load()?).await,
        Command::Fit { config, as_of } => models::fit(config.load()?, as_of).await,
        Command::Backtest {
            config,
            as_of,
            horizon,
        } => models::backtest(config.load()?, as_of, horizon).await,
        Command::Run {
            config,
            simulate,
            sale,
        } => demo::run(config.load()?, simulate, sale).await,
        Command::Simulate {
            url,
            secret,
            source,
            sale,
        } => demo::simulate(url, secret, source, sale).await,
        Command::Spool {
            command: SpoolCommand::Drain { config, dir, wait },
        } => history::spool_drain(config.load()?, dir, Duration::from_secs(wait)).await,
        Command::Repartition {
            config,
            to,
            dry_run,
        } => history::repartition(config.load()?, load(Some(&to))?, dry_run).await,
        Command::Replay {
            config,
            reason,
            customer,
            object,
            list,
        } => {
            let filter = woostream_sink::crm::replay::Filter {
                reason,
                customer,
                object,
                list_only: list,
            };
            history::replay(config.load()?, filter).await
        }
        Command::Backfill {
            config,
            shop,
            since,
            resources,
            restart,
        } => {
            let request = woostream_producer::rest::backfill::Request {
                since: since.as_deref().map(cli::parse_since).transpose()?,
                resources: woostream_woo::rest::Resource::parse_list(&resources)
                    .map_err(|e| anyhow::anyhow!("--resources: {e}"))?,
                restart,
            };
            history::backfill(config.load()?, shop, request).await
        }
        Command::Webhooks {
            command:
                WebhooksCommand::Sync {
                    config,
                    shop,
                    dry_run,
                },
        } => history::webhooks_sync(config.load()?, shop, dry_run).await,
        Command::Erase {
            config,
            shop,
            customer,
            email,
            reason,
            status,
            erasure,
        } => {
            let person = shop.map(|shop| woostream::subject::Person {
                shop,
                customer,
                email,
            });
            people::erase(config.load()?, person, reason, status.then_some(erasure)).await
        }
        Command::ExportSubject {
            config,
            shop,
            customer,
            email,
            out,
        } => {
            let person = woostream::subject::Person {
                shop,
                customer,
                email,
            };
            people::export(config.load()?, person, out).await
        }
        Command::Ready { wait_secs, urls } => {
            contract::ready(&urls, Duration::from_secs(wait_secs)).await
        }
        Command::ConfigSchema => contract::config(cli::ConfigCommand::Schema),
        Command::Config { command } => contract::config(command),
        Command::CheckConfig { config } => contract::check_config(&config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cli::ConfigCommand;
    use woostream::reference;

    /// docs/reference/ is generated (`make docs`); a command or option changed without it fails here.
    #[test]
    fn the_command_reference_is_current() {
        let committed = include_str!("../../../docs/reference/commands.md");
        assert!(
            contract::commands_markdown() == committed,
            "docs/reference/commands.md is stale: run `make docs` and commit it"
        );
    }

    #[test]
    fn the_topics_reference_is_current() {
        assert!(
            woostream_core::contract::topics::markdown()
                == include_str!("../../../docs/reference/topics.md"),
            "docs/reference/topics.md is stale: run `make docs` and commit it"
        );
    }

    #[test]
    fn the_answers_table_is_current() {
        assert!(
            woostream_producer::answer::table_markdown()
                == include_str!("../../../docs/reference/webhook-answers.md"),
            "docs/reference/webhook-answers.md is stale: run `make docs` and commit it"
        );
    }

    #[test]
    fn the_configuration_reference_is_current() {
        let schema = reference::configuration_schema();
        assert!(
            reference::configuration_markdown(&schema)
                == include_str!("../../../docs/reference/configuration.md"),
            "docs/reference/configuration.md is stale: run `make docs` and commit it"
        );
        let committed: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/reference/config.schema.json"))
                .expect("docs/reference/config.schema.json is JSON");
        assert!(
            schema == committed,
            "docs/reference/config.schema.json is stale: run `make docs` and commit it"
        );
    }

    #[test]
    fn the_old_name_of_config_schema_still_parses() {
        assert!(matches!(
            Cli::try_parse_from(["woostream", "config-schema"]).map(|c| c.command),
            Ok(Command::ConfigSchema)
        ));
        assert!(matches!(
            Cli::try_parse_from(["woostream", "config", "schema"]).map(|c| c.command),
            Ok(Command::Config {
                command: ConfigCommand::Schema
            })
        ));
    }
}
