//! The command line: every command, its options and their help (clap), and how a
//! configuration file is loaded and checked.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use woostream::simulate;
use woostream_core::config::Config;

/// The release and the source revision it was built from (`woostream --version`).
pub(crate) const VERSION: &str = concat!(
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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
pub(crate) enum ConfigCommand {
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
pub(crate) enum WebhooksCommand {
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
pub(crate) enum CrmCommand {
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
pub(crate) enum SpoolCommand {
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
pub(crate) enum SlackCommand {
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
pub(crate) struct ConfigArg {
    /// Configuration file (TOML or YAML); WOOSTREAM__… variables override it.
    #[arg(long, short, env = "WOOSTREAM_CONFIG")]
    pub(crate) config: Option<PathBuf>,
}

impl ConfigArg {
    /// Loads the configuration; the Slack rules and templates are checked here too, so that
    /// every role fails at start-up on a mistake in them, with the file and the line.
    pub(crate) fn load(&self) -> anyhow::Result<Config> {
        load(self.config.as_deref())
    }
}

#[derive(clap::Args)]
pub(crate) struct SaleArgs {
    /// Orders in the sale.
    #[arg(long, default_value_t = 3000)]
    pub(crate) orders: usize,
    /// Length of the sale in seconds (the rate follows a burst shape).
    #[arg(long, default_value_t = 30)]
    pub(crate) duration: u64,
    /// Distinct customers (fewer than orders: returning customers).
    #[arg(long, default_value_t = 1200)]
    pub(crate) customers: usize,
    /// Webhooks in flight at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// Customers with a past before the sale (78 weeks of purchases drawn from BG/NBD and
    /// Gamma-Gamma with CDNOW's parameters), imported before the sale (a backfill).
    #[arg(long, default_value_t = 0)]
    pub(crate) history: usize,
    /// After the sale, keep serving the insight page (and everything else) until Ctrl-C.
    #[arg(long)]
    pub(crate) keep_serving: bool,
}

impl SaleArgs {
    pub(crate) fn options(&self, base: simulate::Options) -> simulate::Options {
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

pub(crate) fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let config = Config::load_checked(path, |c| {
        woostream_sink::slack::rules::Rules::compile(&c.slack).map(|_| ())
    })
    .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
    // Every outbound HTTPS client made after this trusts [http] ca_file as well.
    woostream_core::http::trust(&config.http)?;
    Ok(config)
}

/// `--since`: a day (midnight UTC) or an RFC 3339 time.
pub(crate) fn parse_since(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| anyhow::anyhow!("--since {text:?}: expected a day (2024-01-31) or an RFC 3339 time (2024-01-31T08:00:00Z)"))
}

/// A moment on the command line: a UTC date (its midnight) or an RFC 3339 time.
pub(crate) fn parse_moment(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("expected a date such as 2026-06-30 or a time such as 2026-06-30T12:00:00Z, got {s:?}"))
}
