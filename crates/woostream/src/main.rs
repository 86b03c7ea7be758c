//! `woostream`: every role as a subcommand, the all-in-one mode and the flash-sale simulator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use woostream::all_in_one::{self, RunOptions};
use woostream::{reference, simulate};
use woostream_core::config::Config;
use woostream_core::{ops, shutdown, telemetry};

// The enricher allocates and frees many small strings and vectors per record; glibc's malloc
// took a fifth of its CPU in a profile of `make bench-enrich`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The release and the source revision it was built from (`woostream --version`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WOOSTREAM_REVISION"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "woostream",
    version = VERSION,
    about = "WooCommerce events through Kafka into customer intelligence and team action."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the producer role: WooCommerce webhooks into Kafka.
    Producer {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run the enricher role: customer state, CLV, RFM segments and alerts.
    Enricher {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Fit every shop's model (BG/NBD, Gamma-Gamma, RFM boundaries) from the profile topic
    /// and publish it to the models topic; running enrichers pick it up.
    Fit {
        #[command(flatten)]
        config: ConfigArg,
        /// Fit on what was known at this moment (YYYY-MM-DD, UTC midnight, or RFC 3339):
        /// orders created later are left out. Default: now on the configured clock (the
        /// newest event in the profiles, or the wall clock with enricher.clock = "wall").
        #[arg(long, value_parser = parse_moment)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Fit every shop's model at a cut-off, predict each customer's purchases and spend for a
    /// horizon, compare with what they did, print the calibration and publish it to the
    /// backtests topic (the insight page shows the latest).
    Backtest {
        #[command(flatten)]
        config: ConfigArg,
        /// The cut-off (YYYY-MM-DD, UTC midnight, or RFC 3339).
        #[arg(long, value_parser = parse_moment)]
        as_of: chrono::DateTime<chrono::Utc>,
        /// Days after the cut-off the predictions cover.
        #[arg(long, default_value_t = 90)]
        horizon: u32,
    },
    /// Run the insight role: a read-only page of segments, CLV, P(alive), the model, the
    /// latest backtest, the flow per topic and the deliveries, at /insight on the ops port.
    Insight {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run every role in one process; without kafka.bootstrap_servers, on an embedded Kafka.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Post a simulated flash sale to the producer, print a live summary and exit.
        #[arg(long)]
        simulate: bool,
        #[command(flatten)]
        sale: SaleArgs,
    },
    /// Post a simulated flash sale of signed WooCommerce webhooks to a running producer.
    Simulate {
        /// The producer's webhook URL.
        #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/woocommerce")]
        url: String,
        /// The shop's webhook secret.
        #[arg(long, env = "WOOSTREAM_SIMULATE_SECRET")]
        secret: String,
        /// X-WC-Webhook-Source (the shop's home URL).
        #[arg(long, default_value = "https://flash-sale.example/")]
        source: String,
        #[command(flatten)]
        sale: SaleArgs,
    },
    /// The producer's disk spool: drain a directory no producer runs on into Kafka.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
    /// Copy this installation's topics into another set (a new kafka.namespace or new topic
    /// names, more partitions) whose enrichers rebuild every profile: events, subject keys,
    /// the erased-subject list, the deliveries audit, models and checkpoints. Stop this
    /// installation's producers first (see docs/operations/scaling.md).
    Repartition {
        #[command(flatten)]
        config: ConfigArg,
        /// The configuration of the installation to copy into (same Kafka cluster).
        #[arg(long)]
        to: PathBuf,
        /// Print what would be copied; copy nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Slack notifications: run the sink, or preview what the rules would post.
    Slack {
        #[command(subcommand)]
        command: SlackCommand,
    },
    /// The CRM: run the sink, or create the properties it writes.
    Crm {
        #[command(subcommand)]
        command: CrmCommand,
    },
    /// Re-drive the CRM dead-letter topic once the cause is fixed: all of it, or the records
    /// whose reason or customer matches.
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        /// Only records whose reason contains this (case-insensitive), e.g. INVALID_OPTION.
        #[arg(long)]
        reason: Option<String>,
        /// Only this customer (a customer id, or guest:<hash>).
        #[arg(long)]
        customer: Option<String>,
        /// Only contacts, only deals, or only the erasures the CRM refused.
        #[arg(long, value_parser = ["contact", "deal", "contact_erasure"])]
        object: Option<String>,
        /// List what would be replayed; send nothing.
        #[arg(long)]
        list: bool,
    },
    /// Import shops' history through their WooCommerce REST API ([shops.rest]): products,
    /// customers, orders, coupons and reviews become the events the webhooks produce (origin
    /// BACKFILL). A killed backfill resumes at the page it stopped in.
    Backfill {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this shop (default: every shop with a [shops.rest] section).
        #[arg(long)]
        shop: Option<String>,
        /// Only objects created on or after this day or time, UTC (2024-01-31 or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Which collections, in any order (they are read products first).
        #[arg(long, default_value = "products,customers,orders,coupons,reviews")]
        resources: String,
        /// Start from the first page, ignoring what earlier runs finished.
        #[arg(long)]
        restart: bool,
    },
    /// Reconcile every shop with [shops.rest] continuously: what changed since the last pass
    /// (missed webhooks) with origin RECONCILE, reviews (which have no webhook) with origin
    /// POLL, and the shop's webhooks kept active.
    Rest {
        #[command(flatten)]
        config: ConfigArg,
        /// One pass, then exit (for a cron job or a check).
        #[arg(long)]
        once: bool,
    },
    /// The shop's webhooks through its REST API.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Erase a person (GDPR art. 17): their keys deleted, so every personal field woostream
    /// stored about them becomes unreadable in every topic; their customer records and profile
    /// tombstoned; their CRM contact deleted (or anonymised) and their Slack threads forgotten.
    /// A registered customer's guest orders (same email) and a guest's account are found too.
    Erase {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, required_unless_present = "status")]
        shop: Option<String>,
        /// The WooCommerce customer (account) id.
        #[arg(long, required_unless_present_any = ["email", "status"])]
        customer: Option<i64>,
        /// The person's email (finds their guest orders and any account with it).
        #[arg(long)]
        email: Option<String>,
        /// Why, for the receipt (do not name the person).
        #[arg(long)]
        reason: Option<String>,
        /// Show the erasure receipts (what each role erased, where, when) instead.
        #[arg(long, conflicts_with_all = ["customer", "email", "reason"])]
        status: bool,
        /// With --status: only this erasure.
        #[arg(long, requires = "status")]
        erasure: Option<String>,
    },
    /// Export everything woostream holds about a person (GDPR art. 15) as one JSON document:
    /// their account and orders (personal fields opened), profiles with every score explained,
    /// the alerts that named them, their CRM object ids and Slack messages.
    ExportSubject {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        shop: String,
        #[arg(long, required_unless_present = "email")]
        customer: Option<i64>,
        #[arg(long)]
        email: Option<String>,
        /// Write the document here instead of to standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Wait until every URL answers 200 (each role's /readyz, for `helm test`); fails with the
    /// last answer of the first that does not within the time given.
    Ready {
        /// How long to wait for all of them, in seconds.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// The configuration's contract: its JSON Schema, its reference page, a file checked.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Same as `woostream config schema` (the name of release 0.2.0).
    #[command(hide = true)]
    ConfigSchema,
    /// Check a configuration file and print the result with secrets hidden.
    CheckConfig {
        #[arg(long, short, env = "WOOSTREAM_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the configuration's JSON Schema (every key, its type, default and description;
    /// the chart's values.schema.json embeds it).
    Schema,
    /// Print the configuration reference (Markdown: every table, key, type, default and
    /// description), as docs/reference/configuration.md holds it.
    Reference,
    /// Print the command-line reference (Markdown), as docs/reference/commands.md holds it.
    Commands,
    /// Print every topic with its key and value contracts (Markdown), as
    /// docs/reference/topics.md holds it.
    Topics,
    /// Print what the producer answers WooCommerce, and when (Markdown), as
    /// docs/reference/webhook-answers.md holds it.
    Answers,
    /// Check a configuration file and print the result with secrets hidden (as check-config).
    Check {
        #[arg(long, short, env = "WOOSTREAM_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Create or update each shop's webhooks: every topic woostream reads, delivering to
    /// shops.rest.delivery_url with the shop's secret, API v3, active; prints what changed.
    Sync {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this shop.
        #[arg(long)]
        shop: Option<String>,
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum CrmCommand {
    /// Run the CRM sink: contacts and deals kept current in HubSpot, within its API budget.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// The CRM talking back: receive HubSpot's contact webhooks (crm.inbound), keep the
    /// changes in the crm_changes topic, and write them to the shop through its REST API.
    Inbound {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Create the properties the mapping writes that HubSpot lacks (woo_customer_id,
    /// woo_guest_id and woo_order_id unique); safe to run again.
    Setup {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// Send everything a spool directory holds to Kafka and empty it: for the volume of a
    /// producer that exited before it could (scaled away during a Kafka incident). Waits for
    /// the brokers; exits 0 once the directory is empty, 1 if it is not by the end of --wait.
    Drain {
        #[command(flatten)]
        config: ConfigArg,
        /// The spool directory (default: producer.spool_dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How long to wait for Kafka and for its acknowledgements, in seconds.
        #[arg(long, default_value_t = 3600)]
        wait: u64,
    },
}

#[derive(Subcommand)]
enum SlackCommand {
    /// Run the Slack sink: alerts in, routed, rate-limited, digested, posted once.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print what each rule would post for an event file (an alert as JSON), sending nothing.
    Preview {
        #[command(flatten)]
        config: ConfigArg,
        /// The alert, as JSON (see --example).
        #[arg(long, required_unless_present = "example")]
        event: Option<PathBuf>,
        /// Print an example event file of this alert kind (e.g. order_paid) instead.
        #[arg(long)]
        example: Option<String>,
    },
}

/// `--config FILE`, the same for every role.
#[derive(clap::Args)]
struct ConfigArg {
    /// Configuration file (TOML or YAML); WOOSTREAM__… variables override it.
    #[arg(long, short, env = "WOOSTREAM_CONFIG")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    /// Loads the configuration; the Slack rules and templates are checked here too, so that
    /// every role fails at start-up on a mistake in them, with the file and the line.
    fn load(&self) -> anyhow::Result<Config> {
        load(self.config.as_deref())
    }
}

#[derive(clap::Args)]
struct SaleArgs {
    /// Orders in the sale.
    #[arg(long, default_value_t = 3000)]
    orders: usize,
    /// Length of the sale in seconds (the rate follows a burst shape).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Distinct customers (fewer than orders: returning customers).
    #[arg(long, default_value_t = 1200)]
    customers: usize,
    /// Webhooks in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Customers with a past before the sale (78 weeks of purchases drawn from BG/NBD and
    /// Gamma-Gamma with CDNOW's parameters), imported before the sale (a backfill).
    #[arg(long, default_value_t = 0)]
    history: usize,
    /// After the sale, keep serving the insight page (and everything else) until Ctrl-C.
    #[arg(long)]
    keep_serving: bool,
}

impl SaleArgs {
    fn options(&self, base: simulate::Options) -> simulate::Options {
        simulate::Options {
            orders: self.orders,
            duration: Duration::from_secs(self.duration),
            customers: self.customers,
            concurrency: self.concurrency,
            seed: self.seed,
            history_customers: self.history,
            ..base
        }
    }
}

fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let config = Config::load_checked(path, |c| {
        woostream_sink::slack::rules::Rules::compile(&c.slack).map(|_| ())
    })
    .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
    // Every outbound HTTPS client made after this trusts [http] ca_file as well.
    woostream_core::http::trust(&config.http)?;
    Ok(config)
}

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
        Command::Producer { config } => producer(config.load()?).await,
        Command::Enricher { config } => enricher(config.load()?).await,
        Command::Fit { config, as_of } => fit(config.load()?, as_of).await,
        Command::Insight { config } => insight(config.load()?).await,
        Command::Backtest {
            config,
            as_of,
            horizon,
        } => backtest(config.load()?, as_of, horizon).await,
        Command::Run {
            config,
            simulate,
            sale,
        } => {
            let mut config = config.load()?;
            if config.kafka.bootstrap_servers.is_none() {
                // One machine, nothing installed: ephemeral ports on loopback.
                config.producer.listen = "127.0.0.1:0".parse().expect("address");
                config.ops.listen = "127.0.0.1:0".parse().expect("address");
                config.insight.listen = "127.0.0.1:0".parse().expect("address");
            }
            if std::env::var_os("RUST_LOG").is_none() {
                config.log.level = "warn".into();
                config.log.format = "pretty".into();
            }
            telemetry::init(&config);
            let opts = RunOptions {
                simulate: simulate.then(|| sale.options(simulate::Options::default())),
                keep_serving: sale.keep_serving,
            };
            all_in_one::run(config, opts, shutdown::on_signal()).await
        }
        Command::Simulate {
            url,
            secret,
            source,
            sale,
        } => {
            let o = sale.options(simulate::Options {
                url,
                secret,
                source,
                ..simulate::Options::default()
            });
            let stats = std::sync::Arc::new(simulate::Stats::default());
            let started = std::time::Instant::now();
            let r = simulate::run(&o, stats.clone()).await;
            println!("{}", stats.line(started.elapsed()));
            r
        }
        Command::Slack { command } => slack(command).await,
        Command::Spool {
            command: SpoolCommand::Drain { config, dir, wait },
        } => {
            let config = config.load()?;
            telemetry::init(&config);
            let bootstrap = bootstrap(&config)?;
            let dir = dir
                .or_else(|| config.producer.spool_dir.clone())
                .ok_or_else(|| {
                    anyhow::anyhow!("--dir is not given and producer.spool_dir is not set")
                })?;
            let drained = woostream_producer::drain_spool_directory(
                &config,
                &bootstrap,
                &dir,
                Duration::from_secs(wait),
            )
            .await
            .with_context(|| format!("draining the spool in {}", dir.display()))?;
            println!(
                "{}: {} record(s) ({} bytes) sent to Kafka; the spool is empty.",
                dir.display(),
                drained.records,
                drained.pending_bytes_before
            );
            Ok(())
        }
        Command::Repartition {
            config,
            to,
            dry_run,
        } => repartition(config.load()?, load(Some(&to))?, dry_run).await,
        Command::Crm {
            command: CrmCommand::Run { config },
        } => crm(config.load()?).await,
        Command::Crm {
            command: CrmCommand::Setup { config },
        } => crm_setup(config.load()?).await,
        Command::Crm {
            command: CrmCommand::Inbound { config },
        } => crm_inbound(config.load()?).await,
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
            replay(config.load()?, filter).await
        }
        Command::Backfill {
            config,
            shop,
            since,
            resources,
            restart,
        } => {
            let request = woostream_producer::rest::backfill::Request {
                since: since.as_deref().map(parse_since).transpose()?,
                resources: woostream_producer::rest::Resource::parse_list(&resources)
                    .map_err(|e| anyhow::anyhow!("--resources: {e}"))?,
                restart,
            };
            backfill(config.load()?, shop, request).await
        }
        Command::Rest { config, once } => rest(config.load()?, once).await,
        Command::Webhooks {
            command:
                WebhooksCommand::Sync {
                    config,
                    shop,
                    dry_run,
                },
        } => webhooks_sync(config.load()?, shop, dry_run).await,
        Command::Erase {
            config,
            shop,
            customer,
            email,
            reason,
            status,
            erasure,
        } => {
            let config = config.load()?;
            telemetry::init(&config);
            let bootstrap = bootstrap(&config)?;
            let out = if status {
                woostream::subject::status(&config, &bootstrap, erasure.as_deref()).await?
            } else {
                let person = woostream::subject::Person {
                    shop: shop.expect("required by clap"),
                    customer,
                    email,
                };
                woostream::subject::erase(&config, &bootstrap, &person, reason).await?
            };
            print!("{out}");
            Ok(())
        }
        Command::ExportSubject {
            config,
            shop,
            customer,
            email,
            out,
        } => {
            let config = config.load()?;
            telemetry::init(&config);
            let bootstrap = bootstrap(&config)?;
            let person = woostream::subject::Person {
                shop,
                customer,
                email,
            };
            let held = woostream::subject::held(&config, &bootstrap, &person).await?;
            let text = serde_json::to_string_pretty(&woostream::subject::document(&person, &held))?;
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
        Command::Ready { wait_secs, urls } => ready(&urls, Duration::from_secs(wait_secs)).await,
        Command::ConfigSchema
        | Command::Config {
            command: ConfigCommand::Schema,
        } => {
            let schema = reference::configuration_schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Reference,
        } => {
            print!(
                "{}",
                reference::configuration_markdown(&reference::configuration_schema())
            );
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Commands,
        } => {
            print!("{}", commands_markdown());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Topics,
        } => {
            print!("{}", woostream_core::kafka::contracts::markdown());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Answers,
        } => {
            print!("{}", woostream_producer::answer::table_markdown());
            Ok(())
        }
        Command::CheckConfig { config }
        | Command::Config {
            command: ConfigCommand::Check { config },
        } => check_config(&config),
    }
}

/// `woostream check-config`: the effective configuration, secrets hidden.
fn check_config(config: &std::path::Path) -> anyhow::Result<()> {
    let c = load(Some(config))?;
    let origin = config.display().to_string();
    println!(
        "# {origin} is valid. The effective configuration (defaults and WOOSTREAM__ overrides\n# applied), every secret hidden:\n\n{}",
        c.redacted().to_text(&origin)?
    );
    Ok(())
}

/// The command-line reference: every command's help, from clap.
fn commands_markdown() -> String {
    let options = clap_markdown::MarkdownOptions::new()
        .show_footer(false)
        .show_table_of_contents(true)
        .title("Command reference".to_string());
    format!(
        "<!-- Generated by `woostream config commands` (make docs); do not edit by hand. -->\n{}",
        clap_markdown::help_markdown_custom::<Cli>(&options)
    )
}

/// `woostream ready`: polls each URL until it answers 200, all within `wait`.
async fn ready(urls: &[String], wait: Duration) -> anyhow::Result<()> {
    let client = woostream_core::http::client()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let deadline = tokio::time::Instant::now() + wait;
    for url in urls {
        loop {
            let last = match client.get(url).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("{url} is not ready after {} s: {last}", wait.as_secs());
            }
            // Polling a server in another pod: nothing to await but its next answer.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        println!("ready: {url}");
    }
    Ok(())
}

/// `woostream repartition`: the plan, then (unless a dry run) the copy, topic by topic.
async fn repartition(from: Config, to: Config, dry_run: bool) -> anyhow::Result<()> {
    use woostream::repartition::{self, Action};
    telemetry::init(&from);
    let bootstrap = bootstrap(&from)?;
    if to.kafka.bootstrap_servers.as_deref() != Some(bootstrap.as_str()) {
        anyhow::bail!(
            "--to names another Kafka ({}): repartition copies within one cluster",
            to.kafka.bootstrap_servers.as_deref().unwrap_or("none")
        );
    }
    let steps = repartition::plan(&from.topics, &to.topics).map_err(anyhow::Error::msg)?;
    for s in &steps {
        let what = match s.action {
            Action::Copy => "copy   ",
            Action::Rebuilt => "rebuilt",
            Action::Skipped => "skip   ",
        };
        println!("{what} {} -> {}", s.from, s.to);
    }
    if dry_run {
        return Ok(());
    }
    woostream_core::kafka::ensure_topics(&to.kafka, &bootstrap, &to.topics, &to.retention)
        .await
        .context("creating the destination's topics")?;
    let started = std::time::Instant::now();
    let copied = tokio::task::spawn_blocking(move || {
        repartition::copy(&from, &to, &bootstrap, |c| {
            println!(
                "copied  {} -> {}: {} records in {:.1} s",
                c.step.from, c.step.to, c.records, c.seconds
            );
        })
    })
    .await
    .context("the copy thread")??;
    let records: u64 = copied.iter().map(|c| c.records).sum();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{records} records copied in {seconds:.1} s ({:.0} records/s). Start the enrichers of the destination; they rebuild every profile.",
        records as f64 / seconds.max(0.001)
    );
    Ok(())
}

fn bootstrap(config: &Config) -> anyhow::Result<String> {
    config.kafka.bootstrap_servers.clone().ok_or_else(|| {
        anyhow::anyhow!("kafka.bootstrap_servers is not set (or WOOSTREAM__KAFKA__BOOTSTRAP_SERVERS); `woostream run` uses an embedded Kafka instead")
    })
}

/// What every long-running role needs: logs, the broker, shutdown on a signal, and the ops
/// endpoints serving its metrics and readiness.
struct Role {
    bootstrap: String,
    shutdown: tokio_util::sync::CancellationToken,
    registry: prometheus::Registry,
    readiness: ops::Readiness,
    ops_task: tokio::task::JoinHandle<()>,
}

impl Role {
    async fn start(config: &Config) -> anyhow::Result<Role> {
        telemetry::init(config);
        let bootstrap = bootstrap(config)?;
        let shutdown = shutdown::on_signal();
        let registry = prometheus::Registry::new();
        let readiness = ops::Readiness::default();
        let (_, ops_task) = ops::serve(
            &config.ops,
            registry.clone(),
            readiness.clone(),
            shutdown.clone(),
        )
        .await?;
        Ok(Role {
            bootstrap,
            shutdown,
            registry,
            readiness,
            ops_task,
        })
    }

    /// Reports whether the brokers answer (`woostream_kafka_reachable{role}`), for a role that
    /// has no consumer group of its own to watch the lag of.
    fn watch_kafka(&self, config: &Config, role: &'static str) -> anyhow::Result<()> {
        woostream_core::kafka::lag::watch(
            role,
            &config.kafka,
            &self.bootstrap,
            &format!("woostream-{role}"),
            Vec::new(),
            &self.registry,
            self.shutdown.clone(),
        )
    }

    /// A started sink: ready from now on, until its task ends; its end (a fatal error too) stops
    /// the ops server.
    async fn run_sink(
        self,
        ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        let result = task.await?;
        self.shutdown.cancel();
        let _ = self.ops_task.await;
        result
    }
}

async fn webhooks_sync(config: Config, shop: Option<String>, dry_run: bool) -> anyhow::Result<()> {
    telemetry::init(&config);
    let mut synced = 0;
    for s in config
        .shops
        .iter()
        .filter(|s| shop.as_ref().is_none_or(|id| &s.id == id) && s.rest.is_some())
    {
        let delivery_url = s
            .rest
            .as_ref()
            .and_then(|r| r.delivery_url.clone())
            .ok_or_else(|| anyhow::anyhow!("shop {}: shops.rest.delivery_url is not set: the producer's public webhook URL", s.id))?;
        let secret = s
            .resolved_secret()
            .ok_or_else(|| anyhow::anyhow!("shop {}: the webhook secret cannot be read", s.id))?;
        let client = woostream_producer::rest::WooRest::for_shop(s)?;
        let changes =
            woostream_producer::rest::webhooks::sync(&client, &delivery_url, &secret, dry_run)
                .await?;
        println!(
            "shop {}{}:",
            s.id,
            if dry_run {
                " (dry run, nothing changed)"
            } else {
                ""
            }
        );
        for c in changes {
            println!("  {c}");
        }
        synced += 1;
    }
    anyhow::ensure!(synced > 0, "no shop with a [shops.rest] section matches");
    Ok(())
}

async fn rest(config: Config, once: bool) -> anyhow::Result<()> {
    config.check_secrets(&["shops[", "schema_registry."])?;
    let role = Role::start(&config).await?;
    role.watch_kafka(&config, "rest")?;
    let Role {
        bootstrap,
        shutdown,
        registry,
        readiness,
        ops_task,
    } = role;
    // Ready once the first pass is done.
    let ready = readiness.condition("rest");
    let result = woostream_producer::rest::reconcile::run(
        &config,
        &bootstrap,
        &registry,
        ready,
        once,
        config.topics.create,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    let _ = ops_task.await;
    result
}

async fn enricher(config: Config) -> anyhow::Result<()> {
    let Role {
        bootstrap,
        shutdown,
        registry,
        readiness,
        ops_task,
    } = Role::start(&config).await?;
    let running = woostream_enricher::runner::start_supervised(
        &config,
        &bootstrap,
        &registry,
        &readiness,
        shutdown.clone(),
        config.topics.create,
    )
    .await?;
    let result = running.wait().await;
    // A fatal error ends the process: stop serving too.
    shutdown.cancel();
    let _ = ops_task.await;
    result
}

/// `--since`: a day (midnight UTC) or an RFC 3339 time.
fn parse_since(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| anyhow::anyhow!("--since {text:?}: expected a day (2024-01-31) or an RFC 3339 time (2024-01-31T08:00:00Z)"))
}

async fn backfill(
    config: Config,
    shop: Option<String>,
    request: woostream_producer::rest::backfill::Request,
) -> anyhow::Result<()> {
    telemetry::init(&config);
    let bootstrap = bootstrap(&config)?;
    let shops: Vec<&woostream_core::config::ShopConfig> = config
        .shops
        .iter()
        .filter(|s| shop.as_ref().is_none_or(|id| &s.id == id))
        .filter(|s| s.rest.is_some() || shop.is_some())
        .collect();
    if shops.is_empty() {
        anyhow::bail!(match shop {
            Some(id) => format!("no shop {id:?} in the configuration"),
            None => "no shop has a [shops.rest] section: add the REST API's url, consumer_key and consumer_secret".into(),
        });
    }
    let prefixes: Vec<String> = config
        .shops
        .iter()
        .enumerate()
        .filter(|(_, s)| shops.iter().any(|x| x.id == s.id))
        .map(|(i, _)| format!("shops[{i}]."))
        .collect();
    config.check_secrets(&prefixes.iter().map(String::as_str).collect::<Vec<_>>())?;
    let shutdown = shutdown::on_signal();
    for shop in shops {
        let outcomes = woostream_producer::rest::backfill::run(
            &config,
            &bootstrap,
            shop,
            &request,
            config.topics.create,
            shutdown.clone(),
        )
        .await?;
        println!(
            "{}",
            woostream_producer::rest::backfill::summary(&shop.id, &outcomes)
        );
        if shutdown.is_cancelled() {
            println!("Stopped; run the same command again to resume.");
            return Ok(());
        }
    }
    println!(
        "Once the enricher has caught up (woostream_consumer_lag of its group near 0), run `woostream fit` with this configuration so the model reflects the history."
    );
    Ok(())
}

async fn insight(config: Config) -> anyhow::Result<()> {
    let view = std::sync::Arc::new(std::sync::Mutex::new(woostream_insight::View::default()));
    let role = Role::start(&config).await?;
    role.watch_kafka(&config, "insight")?;
    let (page_addr, page_task) = woostream_insight::serve(
        &config.insight,
        view.clone(),
        &role.registry,
        role.shutdown.clone(),
    )
    .await?;
    if config.topics.create {
        woostream_core::kafka::first_contact(&config, &role.bootstrap, true).await?;
    }
    let ready = role.readiness.condition("insight");
    let running =
        woostream_insight::start(&config, &role.bootstrap, view, ready, role.shutdown.clone())
            .await?;
    tracing::info!(listen = %page_addr, "Insight page at /insight.");
    role.shutdown.cancelled().await;
    let _ = tokio::task::spawn_blocking(move || {
        for t in running.threads {
            let _ = t.join();
        }
    })
    .await;
    let _ = page_task.await;
    let _ = role.ops_task.await;
    Ok(())
}

/// A moment on the command line: a UTC date (its midnight) or an RFC 3339 time.
fn parse_moment(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("expected a date such as 2026-06-30 or a time such as 2026-06-30T12:00:00Z, got {s:?}"))
}

async fn backtest(
    config: Config,
    as_of: chrono::DateTime<chrono::Utc>,
    horizon: u32,
) -> anyhow::Result<()> {
    telemetry::init(&config);
    let bootstrap = bootstrap(&config)?;
    if config.topics.create {
        woostream_core::kafka::first_contact(&config, &bootstrap, true).await?;
    }
    let reports =
        woostream_enricher::model::topic::backtest_and_publish(&config, &bootstrap, as_of, horizon)
            .await?;
    if reports.is_empty() {
        println!(
            "No profiles in {}: nothing to backtest.",
            config.topics.profiles.name
        );
    }
    for r in &reports {
        println!("{}", woostream::all_in_one::describe_backtest(r));
    }
    Ok(())
}

async fn fit(config: Config, as_of: Option<chrono::DateTime<chrono::Utc>>) -> anyhow::Result<()> {
    telemetry::init(&config);
    let bootstrap = bootstrap(&config)?;
    let (outputs, decoder) = woostream_enricher::runner::Outputs::for_config(&config).await?;
    let producer = woostream_core::kafka::create_producer(&config.kafka, &bootstrap)?;
    let models = woostream_enricher::model::topic::fit_and_publish(
        &config,
        &bootstrap,
        &decoder,
        &producer,
        &outputs.model,
        &outputs.model_key,
        as_of,
    )
    .await?;
    if models.is_empty() {
        println!(
            "No profiles in {}: nothing to fit.",
            config.topics.profiles.name
        );
    }
    for m in models {
        println!("{}", woostream::all_in_one::describe_model(&m));
    }
    Ok(())
}

async fn slack(command: SlackCommand) -> anyhow::Result<()> {
    use woostream_sink::slack::{preview, rules::Rules};
    match command {
        SlackCommand::Run { config } => {
            let config = config.load()?;
            let role = Role::start(&config).await?;
            let ready = role.readiness.condition("slack");
            let sink = woostream_sink::slack::runner::start(
                &config,
                &role.bootstrap,
                &role.registry,
                &role.readiness,
                role.shutdown.clone(),
                config.topics.create,
            )
            .await?;
            role.run_sink(ready, sink.task).await
        }
        SlackCommand::Preview {
            config,
            event,
            example,
        } => {
            if let Some(kind) = example {
                let alert = preview::example(&kind).map_err(|e| anyhow::anyhow!(e))?;
                println!("{}", preview::alert_to_json(&alert));
                return Ok(());
            }
            let config = config.load()?;
            let path = event.expect("required unless --example");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let alert = preview::alert_from_json(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let rules =
                Rules::compile(&config.slack).map_err(|(k, m)| anyhow::anyhow!("{k}: {m}"))?;
            let admin = woostream_sink::slack::runner::admin_urls(&config).remove(&alert.shop_id);
            let previews = preview::preview(&rules, &alert, admin, chrono::Utc::now());
            if previews.is_empty() {
                println!("No rule matches this {} alert.", alert.kind.as_str());
            }
            for p in previews {
                println!(
                    "── rule {:?} → {} ({}){}",
                    p.rule,
                    p.channel,
                    p.priority,
                    p.skipped
                        .map(|s| format!(", not posted: {s}"))
                        .unwrap_or_default()
                );
                match p.message {
                    Ok(m) => println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"text": m.text, "blocks": m.blocks})
                        )?
                    ),
                    Err(e) => println!("cannot render: {e}"),
                }
            }
            Ok(())
        }
    }
}

async fn crm(config: Config) -> anyhow::Result<()> {
    let role = Role::start(&config).await?;
    let ready = role.readiness.condition("crm");
    let sink = woostream_sink::crm::runner::start(
        &config,
        &role.bootstrap,
        &role.registry,
        &role.readiness,
        role.shutdown.clone(),
        config.topics.create,
    )
    .await?;
    role.run_sink(ready, sink.task).await
}

async fn crm_inbound(config: Config) -> anyhow::Result<()> {
    let role = Role::start(&config).await?;
    role.watch_kafka(&config, "crm-inbound")?;
    let ready = role.readiness.condition("crm inbound");
    let running = woostream_producer::crm_inbound::start(
        &config,
        &role.bootstrap,
        &role.registry,
        role.shutdown.clone(),
        config.topics.create,
    )
    .await?;
    role.run_sink(ready, running.task).await
}

async fn crm_setup(config: Config) -> anyhow::Result<()> {
    telemetry::init(&config);
    let done = woostream_sink::crm::setup::set_up_hubspot(&config.crm).await?;
    for n in &done.created {
        println!(
            "created {} property {} ({})",
            n.object.as_str(),
            n.property.name,
            n.key
        );
    }
    println!(
        "{} properties created, {} present.",
        done.created.len(),
        done.present
    );
    for (status, stage) in &done.checked.unknown_stages {
        println!(
            "warning: pipeline {} has no stage {stage:?} (crm.deal_stages.{status}): deals of {status} orders will be dead-lettered until it exists",
            config.crm.pipeline
        );
    }
    let problems = &done.checked.problems;
    for p in problems {
        println!("not fixed: {}", p.describe());
    }
    if !problems.is_empty() {
        anyhow::bail!("{} problems need a person", problems.len());
    }
    Ok(())
}

async fn replay(config: Config, filter: woostream_sink::crm::replay::Filter) -> anyhow::Result<()> {
    telemetry::init(&config);
    let bootstrap = bootstrap(&config)?;
    let summary =
        woostream_sink::crm::replay::replay(&config, &bootstrap, &filter, shutdown::on_signal())
            .await?;
    println!(
        "{}: {} dead letters, {} replayed before, {} selected{}.",
        config.topics.crm_dead_letter.name,
        summary.dead_letters,
        summary.already_replayed,
        summary.selected.len(),
        if summary.unreadable > 0 {
            format!(
                ", {} unreadable records (not replayable)",
                summary.unreadable
            )
        } else {
            String::new()
        }
    );
    for dl in &summary.selected {
        println!(
            "  {}  customer {}  {} after {} attempts: {}",
            dl.dead_letter_id,
            dl.customer,
            dl.http_status
                .map_or("no HTTP status".into(), |s| format!("HTTP {s}")),
            dl.attempts.len(),
            dl.reason
        );
    }
    if !filter.list_only && !summary.selected.is_empty() {
        println!(
            "Replayed: {} delivered, {} refused again (dead-lettered again), {} superseded (the CRM has a newer state; not sent).",
            summary.delivered, summary.refused_again, summary.superseded
        );
        if summary.refused_again > 0 {
            anyhow::bail!("{} records were refused again", summary.refused_again);
        }
    }
    Ok(())
}

async fn producer(config: Config) -> anyhow::Result<()> {
    let Role {
        bootstrap,
        shutdown,
        registry,
        readiness,
        ops_task,
    } = Role::start(&config).await?;
    let running = woostream_producer::start(
        &config,
        &bootstrap,
        &registry,
        &readiness,
        shutdown,
        config.topics.create,
    )
    .await?;
    running.task.await??;
    let _ = ops_task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/reference/ is generated (`make docs`); a command or option changed without it fails here.
    #[test]
    fn the_command_reference_is_current() {
        let committed = include_str!("../../../docs/reference/commands.md");
        assert!(
            commands_markdown() == committed,
            "docs/reference/commands.md is stale: run `make docs` and commit it"
        );
    }

    #[test]
    fn the_topics_reference_is_current() {
        assert!(
            woostream_core::kafka::contracts::markdown()
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
