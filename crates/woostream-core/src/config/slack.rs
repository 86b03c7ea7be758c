//! The `[slack]` section: channels, rules and templates as data. The types only; the sink
//! compiles and checks them at start-up (templates need its template engine), reporting the
//! offending key so that the file and line can be named.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SlackConfig {
    /// This sink's name where several Slack workspaces share one Kafka: it is in the consumer
    /// group (`woostream-slack-<workspace>`) and in every audit record, so that two sinks never
    /// share offsets, deliveries or threads. `default` keeps the names of earlier releases.
    pub workspace: String,
    /// Consumer group of the Slack sink (with a named workspace, `-<workspace>` is added to the
    /// default).
    pub group_id: String,
    /// Base URL of Slack's Web API (a test server in tests).
    pub api_url: String,
    /// Bot token (`xoxb-…`) for `chat.postMessage`.
    pub token: Option<Secret>,
    /// Or: the environment variable holding it.
    pub token_env: Option<String>,
    /// Render and record messages instead of posting them (`make run`).
    pub dry_run: bool,
    /// Link to an order in the shop's admin; `{order_id}` is replaced. Default: the shop's
    /// `wp-admin/post.php?post={order_id}&action=edit`.
    pub admin_url: Option<String>,
    /// Messages per second and per channel (Slack allows about one).
    pub per_channel_per_second: f64,
    /// Short bursts a channel may take above its rate.
    pub per_channel_burst: u32,
    /// Messages per minute for the whole workspace.
    pub workspace_per_minute: u32,
    /// When a channel's backlog of routine events cannot be posted one by one within this
    /// many seconds, they are folded into digest messages.
    pub digest_after_secs: u64,
    /// Events one digest message holds at most (it lists every order number).
    pub digest_max_events: usize,
    /// An urgent alert reaches Slack within about this many seconds under any load: when a
    /// channel's urgent backlog could not be posted one by one in that time, it is folded
    /// into one urgent digest (problems such as failed payments first).
    pub urgent_within_secs: u64,
    /// Quiet hours, UTC, e.g. `"22:00-07:00"`: routine and low-priority events are not
    /// posted (they are recorded as skipped); urgent ones are.
    pub quiet_hours: Option<String>,
    /// Where rules post: channels by name, id, or incoming webhook.
    pub channels: Vec<SlackChannel>,
    /// Which alerts go where; an alert no rule takes is not posted.
    pub rules: Vec<SlackRule>,
    /// Named templates; rules refer to them by name. Built-in ones exist for every kind.
    pub templates: BTreeMap<String, SlackTemplate>,
}

impl fmt::Debug for SlackConfig {
    // The token never reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackConfig")
            .field("workspace", &self.workspace)
            .field("group_id", &self.group_id)
            .field("api_url", &self.api_url)
            .field("token", &self.token)
            .field("token_env", &self.token_env)
            .field("dry_run", &self.dry_run)
            .field("channels", &self.channels)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Default for SlackConfig {
    fn default() -> Self {
        SlackConfig {
            workspace: crate::contract::sink_records::default_identity(),
            group_id: default_group(),
            api_url: "https://slack.com/api".into(),
            token: None,
            token_env: None,
            dry_run: false,
            admin_url: None,
            per_channel_per_second: 1.0,
            per_channel_burst: 2,
            // Slack keeps an undisclosed workspace-wide limit beside the per-channel one.
            workspace_per_minute: 120,
            digest_after_secs: 20,
            digest_max_events: 200,
            urgent_within_secs: 5,
            quiet_hours: None,
            channels: Vec::new(),
            rules: Vec::new(),
            templates: BTreeMap::new(),
        }
    }
}

impl SlackConfig {
    pub fn resolved_token(&self) -> Option<String> {
        crate::secret::resolve_secret(&self.token, &self.token_env)
    }
}

/// A destination: a channel posted to with the bot token, or an incoming webhook.
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackChannel {
    /// How rules name it, e.g. `#orders`.
    pub name: String,
    /// Slack's channel id (`C…` public, `G…` private); the name without `#` otherwise.
    #[serde(default)]
    pub id: Option<String>,
    /// Post through this incoming webhook instead of the bot token.
    #[serde(default)]
    pub webhook_url: Option<Secret>,
    /// Or: the environment variable holding the webhook URL.
    #[serde(default)]
    pub webhook_url_env: Option<String>,
}

impl fmt::Debug for SlackChannel {
    // A webhook URL is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackChannel")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("webhook_url", &self.webhook_url)
            .field("webhook_url_env", &self.webhook_url_env)
            .finish()
    }
}

impl SlackChannel {
    pub fn resolved_webhook(&self) -> Option<String> {
        crate::secret::resolve_secret(&self.webhook_url, &self.webhook_url_env)
    }
}

/// Urgent events jump every queue and are never folded into a digest.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Urgent,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Urgent => "urgent",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// Which alerts a rule takes, and where and how it posts them. Every condition given must
/// hold; a list condition holds when any of its values matches.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackRule {
    /// How logs, metrics and the audit name the rule.
    pub name: String,
    /// Alert kinds, e.g. `["order_paid", "payment_failed"]`.
    pub kinds: Vec<String>,
    /// Order status before (`order_status_changed`), e.g. `["pending"]`.
    #[serde(default)]
    pub status_from: Vec<String>,
    /// Order status now, e.g. `["processing", "completed"]`.
    #[serde(default)]
    pub status_to: Vec<String>,
    /// Product category ids; any item (or the product) in one of them.
    #[serde(default)]
    pub categories: Vec<i64>,
    /// Order total at least / below, in the order's currency (decimal strings).
    #[serde(default)]
    pub min_total: Option<String>,
    /// See `min_total`.
    #[serde(default)]
    pub max_total: Option<String>,
    /// Payment gateway ids, e.g. `["cod", "stripe"]`.
    #[serde(default)]
    pub payment_methods: Vec<String>,
    /// Review rating bounds.
    #[serde(default)]
    pub min_rating: Option<i32>,
    /// See `min_rating`.
    #[serde(default)]
    pub max_rating: Option<i32>,
    /// Customer segments by name, e.g. `["Champions", "At Risk"]`.
    #[serde(default)]
    pub segments: Vec<String>,
    /// 12-month CLV at least (decimal string).
    #[serde(default)]
    pub min_clv: Option<String>,
    /// Only VIP (top CLV tier) customers, or only others.
    #[serde(default)]
    pub vip: Option<bool>,
    /// Channel names from `[[slack.channels]]`.
    pub channels: Vec<String>,
    /// Template name; default: the built-in template of the alert's kind.
    #[serde(default)]
    pub template: Option<String>,
    /// Emoji the template shows (`:rotating_light:`); default: the kind's own.
    #[serde(default)]
    pub emoji: Option<String>,
    /// `urgent` jumps every queue, is never folded into a digest and is the only priority
    /// posted in quiet hours; `low` is posted after `normal`.
    #[serde(default)]
    pub priority: Priority,
    /// A muted rule matches but posts nothing (recorded as skipped).
    #[serde(default)]
    pub muted: bool,
    /// Also post alerts caused by a backfill (importing history would otherwise post years of
    /// it); default false. Profiles, segments and stock levels are computed from them anyway.
    #[serde(default)]
    pub include_backfill: bool,
    /// Post urgent events of this rule even in quiet hours; others wait for none.
    #[serde(default)]
    pub ignore_quiet_hours: bool,
    /// Personal fields this rule may show: only `first_name_initial` exists in alerts.
    #[serde(default)]
    pub personal: Vec<String>,
    /// Post later updates of the same order as thread replies (default true).
    #[serde(default = "super::yes")]
    pub thread: bool,
}

impl Default for SlackRule {
    /// What a rule that names only its kinds and channels does (as `#[serde(default)]` fills it).
    fn default() -> Self {
        SlackRule {
            name: String::new(),
            kinds: Vec::new(),
            status_from: Vec::new(),
            status_to: Vec::new(),
            categories: Vec::new(),
            min_total: None,
            max_total: None,
            payment_methods: Vec::new(),
            min_rating: None,
            max_rating: None,
            segments: Vec::new(),
            min_clv: None,
            vip: None,
            channels: Vec::new(),
            template: None,
            emoji: None,
            priority: Priority::Normal,
            muted: false,
            include_backfill: false,
            ignore_quiet_hours: false,
            personal: Vec::new(),
            thread: true,
        }
    }
}

/// A message template: minijinja text for each part of the Block Kit message.
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackTemplate {
    /// Header block (plain text, at most 150 characters).
    #[serde(default)]
    pub header: Option<String>,
    /// Section text (mrkdwn); long lists are cut with "…and N more".
    pub text: String,
    /// Section fields (mrkdwn, at most 10).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Context line under the message.
    #[serde(default)]
    pub context: Option<String>,
    /// Notification text; default: the header, else the text.
    #[serde(default)]
    pub fallback: Option<String>,
}

fn default_group() -> String {
    "woostream-slack".into()
}

impl SlackConfig {
    /// This sink in the audit topic: `slack`, or `slack@<workspace>`.
    pub fn sink_name(&self) -> String {
        crate::contract::sink_records::sink_name("slack", &self.workspace)
    }

    /// The consumer group this sink keeps its offsets in.
    pub fn consumer_group(&self) -> String {
        crate::contract::sink_records::consumer_group(
            &self.group_id,
            &default_group(),
            &self.workspace,
        )
    }

    /// The group an unnamed sink of an earlier release kept its offsets in, where this sink
    /// starts from when it has none of its own (a named workspace, upgraded).
    pub fn earlier_group(&self) -> Option<String> {
        (self.consumer_group() != self.group_id).then(|| self.group_id.clone())
    }
}
