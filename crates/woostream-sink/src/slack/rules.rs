//! Rules as data: which alerts go to which channels, with which template, emoji and priority.
//! Compiled once at start-up; every mistake names its configuration key.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveTime, Timelike, Utc};
use rust_decimal::Decimal;
use woostream_core::config::slack::{Priority, SlackConfig, SlackRule};
use woostream_core::contract::enriched::{Alert, AlertKind, Segment};

use super::template::{Templates, PERSONAL_FIELDS};

/// A configuration mistake: the key (e.g. `slack.rules[2].channels[0]`) and what was expected.
pub type KeyError = (String, String);

/// Where one alert goes through one rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub rule: usize,
    pub channel: String,
    pub priority: Priority,
    /// The rule is muted or it is quiet time: record the alert as skipped, post nothing.
    pub skip: Option<&'static str>,
}

/// A daily UTC window, possibly across midnight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuietHours {
    from: NaiveTime,
    to: NaiveTime,
}

impl FromStr for QuietHours {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let expected =
            || format!("expected \"HH:MM-HH:MM\" (UTC), e.g. \"22:00-07:00\"; got {s:?}");
        let (a, b) = s.split_once('-').ok_or_else(expected)?;
        let parse = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| expected());
        Ok(QuietHours {
            from: parse(a)?,
            to: parse(b)?,
        })
    }
}

impl QuietHours {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let t = NaiveTime::from_hms_opt(at.hour(), at.minute(), at.second()).unwrap_or_default();
        if self.from <= self.to {
            self.from <= t && t < self.to
        } else {
            t >= self.from || t < self.to
        }
    }
}

/// A rule ready to match.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    pub name: String,
    kinds: Vec<AlertKind>,
    status_from: Vec<String>,
    status_to: Vec<String>,
    categories: Vec<i64>,
    min_total: Option<Decimal>,
    max_total: Option<Decimal>,
    payment_methods: Vec<String>,
    min_rating: Option<i32>,
    max_rating: Option<i32>,
    segments: Vec<Segment>,
    min_clv: Option<Decimal>,
    vip: Option<bool>,
    pub channels: Vec<String>,
    /// Template name (a configured one or `builtin:<kind>`).
    pub template: Option<String>,
    pub emoji: Option<String>,
    pub priority: Priority,
    muted: bool,
    include_backfill: bool,
    ignore_quiet_hours: bool,
    pub personal: Vec<String>,
    pub thread: bool,
}

/// Every rule, and the templates they use, checked together.
#[derive(Debug)]
pub struct Rules {
    pub rules: Vec<CompiledRule>,
    pub templates: Templates,
    quiet_hours: Option<QuietHours>,
}

fn decimal(key: String, v: &Option<String>) -> Result<Option<Decimal>, KeyError> {
    v.as_deref()
        .map(|s| {
            Decimal::from_str(s.trim()).map_err(|_| {
                (
                    key,
                    format!("expected a decimal amount such as \"500.00\"; got {s:?}"),
                )
            })
        })
        .transpose()
}

impl Rules {
    /// Compiles the `[slack]` section: kinds, segments, amounts, channels and templates must
    /// all be known, and every template variable must exist.
    pub fn compile(config: &SlackConfig) -> Result<Rules, KeyError> {
        let quiet_hours = config
            .quiet_hours
            .as_deref()
            .map(|q| q.parse().map_err(|e| ("slack.quiet_hours".to_string(), e)))
            .transpose()?;
        let mut channel_names = HashMap::new();
        for (i, c) in config.channels.iter().enumerate() {
            let at = |f: &str| format!("slack.channels[{i}].{f}");
            if !c.name.starts_with('#') || c.name.len() < 2 {
                return Err((
                    at("name"),
                    format!(
                        "expected a channel name starting with '#', e.g. \"#orders\"; got {:?}",
                        c.name
                    ),
                ));
            }
            if let Some(id) = &c.id {
                let valid = id.len() >= 9
                    && matches!(id.as_bytes()[0], b'C' | b'G' | b'D')
                    && id
                        .chars()
                        .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit());
                if !valid {
                    return Err((at("id"), format!("expected a Slack channel id such as \"C0123ABCDEF\" (C… public, G… private); got {id:?}")));
                }
            }
            if let Some(url) = c.resolved_webhook() {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err((at("webhook_url"), "expected an incoming webhook URL, https://hooks.slack.com/services/T…/B…/…".into()));
                }
            }
            if channel_names.insert(c.name.clone(), i).is_some() {
                return Err((
                    at("name"),
                    format!("channel {:?} is configured twice", c.name),
                ));
            }
        }
        let needs_token = config
            .channels
            .iter()
            .any(|c| c.webhook_url.is_none() && c.webhook_url_env.is_none());
        if needs_token
            && !config.dry_run
            && config.token.is_none()
            && config.token_env.is_none()
            && !config.rules.is_empty()
        {
            return Err(("slack.token".into(), "channels without a webhook_url post with the bot token: set token or token_env (or dry_run = true)".into()));
        }
        if config.per_channel_per_second <= 0.0 || !config.per_channel_per_second.is_finite() {
            return Err((
                "slack.per_channel_per_second".into(),
                "expected a positive number of messages per second".into(),
            ));
        }
        if config.digest_max_events == 0 {
            return Err((
                "slack.digest_max_events".into(),
                "expected at least 1".into(),
            ));
        }
        let templates = Templates::compile(&config.templates)?;
        let mut rules = Vec::new();
        for (i, r) in config.rules.iter().enumerate() {
            rules.push(compile_rule(i, r, &channel_names, &templates)?);
        }
        Ok(Rules {
            rules,
            templates,
            quiet_hours,
        })
    }

    /// The routes of one alert: per channel, the first rule that matches it.
    pub fn route(&self, alert: &Alert, now: DateTime<Utc>) -> Vec<Route> {
        let mut out: Vec<Route> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches(alert) {
                continue;
            }
            let quiet = self.quiet_hours.is_some_and(|q| q.contains(now))
                && rule.priority != Priority::Urgent
                && !rule.ignore_quiet_hours;
            let history = alert.origin == woostream_core::contract::events::Origin::Backfill
                && !rule.include_backfill;
            let skip = if rule.muted {
                Some("muted")
            } else if history {
                Some("backfill")
            } else if quiet {
                Some("quiet_hours")
            } else {
                None
            };
            for channel in &rule.channels {
                if out.iter().any(|r| &r.channel == channel) {
                    continue;
                }
                out.push(Route {
                    rule: i,
                    channel: channel.clone(),
                    priority: rule.priority,
                    skip,
                });
            }
        }
        out
    }
}

fn compile_rule(
    i: usize,
    r: &SlackRule,
    channels: &HashMap<String, usize>,
    templates: &Templates,
) -> Result<CompiledRule, KeyError> {
    let at = |f: &str| format!("slack.rules[{i}].{f}");
    if r.name.trim().is_empty() {
        return Err((at("name"), "expected a name for the rule".into()));
    }
    if r.kinds.is_empty() {
        return Err((at("kinds"), "expected at least one alert kind".into()));
    }
    let mut kinds = Vec::new();
    for (k, name) in r.kinds.iter().enumerate() {
        let kind = AlertKind::ALL
            .into_iter()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| {
                (
                    format!("slack.rules[{i}].kinds[{k}]"),
                    format!(
                        "unknown alert kind {name:?}; expected one of {}",
                        AlertKind::ALL.map(|a| a.as_str()).join(", ")
                    ),
                )
            })?;
        kinds.push(kind);
    }
    let mut segments = Vec::new();
    for (k, name) in r.segments.iter().enumerate() {
        segments.push(Segment::from_name(name).ok_or_else(|| {
            (
                format!("slack.rules[{i}].segments[{k}]"),
                format!(
                    "unknown segment {name:?}; expected one of {}",
                    Segment::ALL.map(|s| s.name()).join(", ")
                ),
            )
        })?);
    }
    if r.channels.is_empty() {
        return Err((at("channels"), "expected at least one channel".into()));
    }
    for (k, c) in r.channels.iter().enumerate() {
        if !channels.contains_key(c) {
            return Err((
                format!("slack.rules[{i}].channels[{k}]"),
                format!(
                    "unknown channel {c:?}; expected one of the [[slack.channels]] names: {}",
                    channels.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    for (k, p) in r.personal.iter().enumerate() {
        if !PERSONAL_FIELDS.contains(&p.as_str()) {
            return Err((
                format!("slack.rules[{i}].personal[{k}]"),
                format!(
                    "alerts carry no {p:?}; the personal fields a rule may show are: {}",
                    PERSONAL_FIELDS.join(", ")
                ),
            ));
        }
    }
    for (name, bound) in [("min_rating", r.min_rating), ("max_rating", r.max_rating)] {
        if bound.is_some_and(|v| !(1..=5).contains(&v)) {
            return Err((at(name), "expected a rating from 1 to 5".into()));
        }
    }
    if let Some(t) = &r.template {
        templates
            .check_use(t, &r.personal)
            .map_err(|m| (at("template"), m))?;
    } else {
        for kind in &kinds {
            templates
                .check_use(&Templates::builtin_name(*kind), &r.personal)
                .map_err(|m| (at("kinds"), m))?;
        }
    }
    Ok(CompiledRule {
        name: r.name.clone(),
        kinds,
        status_from: r.status_from.clone(),
        status_to: r.status_to.clone(),
        categories: r.categories.clone(),
        min_total: decimal(at("min_total"), &r.min_total)?,
        max_total: decimal(at("max_total"), &r.max_total)?,
        payment_methods: r.payment_methods.clone(),
        min_rating: r.min_rating,
        max_rating: r.max_rating,
        segments,
        min_clv: decimal(at("min_clv"), &r.min_clv)?,
        vip: r.vip,
        channels: r.channels.clone(),
        template: r.template.clone(),
        emoji: r.emoji.clone(),
        priority: r.priority,
        muted: r.muted,
        include_backfill: r.include_backfill,
        ignore_quiet_hours: r.ignore_quiet_hours,
        personal: r.personal.clone(),
        thread: r.thread,
    })
}

impl CompiledRule {
    pub fn matches(&self, a: &Alert) -> bool {
        if !self.kinds.contains(&a.kind) {
            return false;
        }
        let order = a.order.as_ref();
        let customer = a.customer.as_ref();
        let any_of = |list: &[String], value: Option<&str>| {
            list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x == v))
        };
        if !any_of(
            &self.status_from,
            order.and_then(|o| o.previous_status.as_deref()),
        ) || !any_of(&self.status_to, order.map(|o| o.status.as_str()))
            || !any_of(
                &self.payment_methods,
                order.and_then(|o| o.payment_method.as_deref()),
            )
        {
            return false;
        }
        if !self.categories.is_empty() {
            let in_order = order.is_some_and(|o| {
                o.items
                    .iter()
                    .any(|i| i.category_ids.iter().any(|c| self.categories.contains(c)))
            });
            let in_product = a
                .product
                .as_ref()
                .is_some_and(|p| p.category_ids.iter().any(|c| self.categories.contains(c)));
            if !(in_order || in_product) {
                return false;
            }
        }
        let total = order.map(|o| o.total.amount());
        if self.min_total.is_some_and(|m| total.is_none_or(|t| t < m))
            || self.max_total.is_some_and(|m| total.is_none_or(|t| t >= m))
        {
            return false;
        }
        let rating = a.review.as_ref().map(|r| r.rating);
        if self
            .min_rating
            .is_some_and(|m| rating.is_none_or(|r| r < m))
            || self
                .max_rating
                .is_some_and(|m| rating.is_none_or(|r| r > m))
        {
            return false;
        }
        if !self.segments.is_empty()
            && !customer.is_some_and(|c| {
                Segment::from_name(&c.segment).is_some_and(|s| self.segments.contains(&s))
            })
        {
            return false;
        }
        if self
            .min_clv
            .is_some_and(|m| customer.is_none_or(|c| c.clv_12_months.amount() < m))
        {
            return false;
        }
        if let Some(vip) = self.vip {
            if customer.is_none_or(|c| c.vip != vip) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use woostream_core::config::Config;

    use super::*;
    use crate::slack::examples::order_alert;

    const BASE: &str = r##"
[slack]
dry_run = true
quiet_hours = "22:00-07:00"
[[slack.channels]]
name = "#orders"
[[slack.channels]]
name = "#vip"
id = "G0VIPS0000"
"##;

    fn rules(extra: &str) -> Result<Rules, String> {
        let config = Config::from_text(
            "t.toml",
            &format!("{BASE}{extra}"),
            Vec::<(String, String)>::new(),
        )
        .map_err(|e| e.to_string())?;
        Rules::compile(&config.slack).map_err(|(k, m)| format!("{k}: {m}"))
    }

    fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
    }

    #[test]
    fn conditions_route_by_kind_status_value_payment_category_and_customer() {
        let r = rules(
            r##"
[[slack.rules]]
name = "big card orders in mugs"
kinds = ["order_paid", "order_status_changed"]
status_from = ["pending"]
status_to = ["processing"]
min_total = "500"
payment_methods = ["stripe"]
categories = [15]
channels = ["#orders"]
[[slack.rules]]
name = "vip champions"
kinds = ["order_paid"]
segments = ["Champions"]
min_clv = "1000"
channels = ["#vip", "#orders"]
priority = "urgent"
"##,
        )
        .unwrap();
        let a = order_alert(1, AlertKind::OrderPaid, "600.00");
        let routes = r.route(&a, noon());
        // #orders once (the first rule that routes there), #vip by the second rule.
        assert_eq!(
            routes
                .iter()
                .map(|r| (r.rule, r.channel.as_str()))
                .collect::<Vec<_>>(),
            vec![(0, "#orders"), (1, "#vip")]
        );
        let small = order_alert(2, AlertKind::OrderPaid, "499.99");
        assert_eq!(
            r.route(&small, noon()).len(),
            2,
            "the VIP rule still routes it, to both channels"
        );
        assert_eq!(r.route(&small, noon())[0].rule, 1);
        let mut cash = order_alert(3, AlertKind::OrderPaid, "600.00");
        cash.order.as_mut().unwrap().payment_method = Some("cod".into());
        cash.customer.as_mut().unwrap().segment = "At Risk".into();
        assert!(r.route(&cash, noon()).is_empty());
        let mut other_category = order_alert(4, AlertKind::OrderPaid, "600.00");
        other_category.order.as_mut().unwrap().items[0].category_ids = vec![99];
        other_category.customer.as_mut().unwrap().clv_12_months =
            woostream_core::Money::new(rust_decimal::Decimal::from(10));
        assert!(r.route(&other_category, noon()).is_empty());
        assert!(r
            .route(&order_alert(5, AlertKind::StockLow, "1"), noon())
            .is_empty());
    }

    #[test]
    fn quiet_hours_and_muting_skip_routine_rules_but_not_urgent_ones() {
        let r = rules(
            r##"
[[slack.rules]]
name = "paid"
kinds = ["order_paid"]
channels = ["#orders"]
[[slack.rules]]
name = "failed"
kinds = ["payment_failed"]
channels = ["#orders"]
priority = "urgent"
[[slack.rules]]
name = "muted"
kinds = ["order_paid"]
channels = ["#vip"]
muted = true
"##,
        )
        .unwrap();
        let night = Utc.with_ymd_and_hms(2026, 11, 20, 23, 30, 0).unwrap();
        let paid = order_alert(1, AlertKind::OrderPaid, "10");
        let skips: Vec<_> = r.route(&paid, night).iter().map(|r| r.skip).collect();
        assert_eq!(skips, vec![Some("quiet_hours"), Some("muted")]);
        assert_eq!(r.route(&paid, noon())[0].skip, None);
        let failed = order_alert(2, AlertKind::PaymentFailed, "10");
        assert_eq!(r.route(&failed, night)[0].skip, None);
        // History imported by a backfill is recorded as skipped, unless a rule includes it.
        let mut imported = order_alert(3, AlertKind::PaymentFailed, "10");
        imported.origin = woostream_core::contract::events::Origin::Backfill;
        assert_eq!(r.route(&imported, noon())[0].skip, Some("backfill"));
        let with_history = rules(
            r##"
[[slack.rules]]
name = "failed"
kinds = ["payment_failed"]
channels = ["#orders"]
include_backfill = true
"##,
        )
        .unwrap();
        assert_eq!(with_history.route(&imported, noon())[0].skip, None);
        let q: QuietHours = "22:00-07:00".parse().unwrap();
        assert!(q.contains(Utc.with_ymd_and_hms(2026, 1, 1, 6, 59, 0).unwrap()));
        assert!(!q.contains(Utc.with_ymd_and_hms(2026, 1, 1, 7, 0, 0).unwrap()));
    }

    #[test]
    fn mistakes_name_the_key_and_what_was_expected() {
        let cases = [
            (r##"[[slack.rules]]
name = "x"
kinds = ["order_payed"]
channels = ["#orders"]"##, "slack.rules[0].kinds[0]: unknown alert kind \"order_payed\""),
            (r##"[[slack.rules]]
name = "x"
kinds = ["order_paid"]
channels = ["#ordres"]"##, "slack.rules[0].channels[0]: unknown channel \"#ordres\""),
            (r##"[[slack.rules]]
name = "x"
kinds = ["order_paid"]
segments = ["Champion"]
channels = ["#orders"]"##, "slack.rules[0].segments[0]: unknown segment \"Champion\""),
            (r##"[[slack.rules]]
name = "x"
kinds = ["order_paid"]
min_total = "12,50"
channels = ["#orders"]"##, "slack.rules[0].min_total: expected a decimal amount"),
            (r##"[[slack.rules]]
name = "x"
kinds = ["order_paid"]
template = "nope"
channels = ["#orders"]"##, "slack.rules[0].template: unknown template \"nope\""),
            (r##"[slack.templates.t]
text = "{{ order.totl }}""##, "slack.templates.t.text: unknown variable \"order.totl\""),
            (r##"[slack.templates.t]
text = "{% if order.total %}""##, "slack.templates.t.text: syntax error"),
            (r##"[slack.templates.t]
text = "Hello {{ customer.initial }}"
[[slack.rules]]
name = "x"
kinds = ["order_paid"]
template = "t"
channels = ["#orders"]"##, "slack.rules[0].template: template \"t\" shows customer.initial, which is personal data"),
            (r##"[[slack.rules]]
name = "x"
kinds = ["order_paid"]
personal = ["email"]
channels = ["#orders"]"##, "slack.rules[0].personal[0]: alerts carry no \"email\""),
        ];
        for (extra, expected) in cases {
            let e = rules(extra).unwrap_err();
            assert!(e.contains(expected), "{e}\n  expected: {expected}");
        }
        let e = rules("").and_then(|_| {
            let c = Config::from_text(
                "t.toml",
                "[slack]\nquiet_hours = \"late\"\n",
                Vec::<(String, String)>::new(),
            )
            .unwrap();
            Rules::compile(&c.slack).map_err(|(k, m)| format!("{k}: {m}"))
        });
        assert!(e
            .unwrap_err()
            .starts_with("slack.quiet_hours: expected \"HH:MM-HH:MM\""));
    }

    #[test]
    fn the_file_and_line_of_a_mistake_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("woostream.toml");
        std::fs::write(
            &path,
            format!("{BASE}\n[[slack.rules]]\nname = \"x\"\nkinds = [\"order_paid\"]\nchannels = [\"#nowhere\"]\n"),
        )
        .unwrap();
        let e = Config::load_checked(Some(&path), |c| Rules::compile(&c.slack).map(|_| ()))
            .unwrap_err();
        assert_eq!(e.line, Some(14), "{e}");
        assert!(
            e.to_string()
                .contains("woostream.toml:14: slack.rules[0].channels[0]: unknown channel"),
            "{e}"
        );
    }

    #[test]
    fn the_shipped_example_rules_compile() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/woostream.example.toml"
        );
        let c = Config::load_checked(Some(std::path::Path::new(path)), |c| {
            Rules::compile(&c.slack).map(|_| ())
        });
        // The shop secret and the CRM token come from the environment in the example.
        let c = c.or_else(|_| {
            Config::from_text(
                path,
                &std::fs::read_to_string(path).unwrap(),
                vec![
                    (
                        "WOOSTREAM__SHOPS__0__SECRET_ENV".to_string(),
                        "PATH".to_string(),
                    ),
                    ("WOOSTREAM__CRM__TOKEN_ENV".to_string(), "PATH".to_string()),
                ],
            )
        });
        let rules = Rules::compile(&c.unwrap().slack).unwrap();
        assert_eq!(rules.rules.len(), 4);
    }
}
