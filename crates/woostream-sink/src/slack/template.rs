//! Templates (minijinja) over an alert's variables. Values are escaped for mrkdwn (`&`, `<`,
//! `>`) as they are inserted, so a customer's text can never become a link or a mention; the
//! template's own text is trusted and may use `<url|label>`.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{Environment, Value};
use rust_decimal::Decimal;
use serde_json::json;
use woostream_core::config::slack::SlackTemplate;
use woostream_core::contract::enriched::{Alert, AlertKind};

use super::rules::KeyError;

/// Personal fields a rule can allow. Alerts carry nothing more personal than this.
pub const PERSONAL_FIELDS: [&str; 2] = ["first_name_initial", "customer_note"];

const PARTS: [&str; 4] = ["header", "text", "context", "fallback"];

/// One rendered message, before Block Kit limits are applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    pub header: Option<String>,
    pub text: String,
    pub fields: Vec<String>,
    pub context: Option<String>,
    pub fallback: String,
}

/// Every template, compiled: the configured ones by name, the built-in ones as
/// `builtin:<kind>`.
pub struct Templates {
    mrkdwn: Environment<'static>,
    plain: Environment<'static>,
    /// Template name → number of fields.
    names: BTreeMap<String, usize>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("names", &self.names.keys())
            .finish()
    }
}

/// `&`, `<` and `>` as Slack wants them in mrkdwn (`&` first).
pub fn escape_mrkdwn(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn environment(escape: bool) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_formatter(move |out, _state, value| {
        // Absent optional values render as nothing rather than "none".
        if value.is_none() || value.is_undefined() {
            return Ok(());
        }
        let text = value.to_string();
        let text = if escape { escape_mrkdwn(&text) } else { text };
        out.write_str(&text)?;
        Ok(())
    });
    env
}

impl Templates {
    pub fn builtin_name(kind: AlertKind) -> String {
        format!("builtin:{}", kind.as_str())
    }

    pub fn compile(configured: &BTreeMap<String, SlackTemplate>) -> Result<Templates, KeyError> {
        let mut t = Templates {
            mrkdwn: environment(true),
            plain: environment(false),
            names: BTreeMap::new(),
        };
        for kind in AlertKind::ALL {
            t.add(&Templates::builtin_name(kind), &builtin(kind))
                .unwrap_or_else(|(k, m)| panic!("built-in template {k}: {m}"));
        }
        for (name, template) in configured {
            if name.starts_with("builtin:") {
                return Err((
                    format!("slack.templates.{name}"),
                    "names starting with \"builtin:\" are reserved".into(),
                ));
            }
            t.add(name, template)?;
        }
        Ok(t)
    }

    fn add(&mut self, name: &str, template: &SlackTemplate) -> Result<(), KeyError> {
        let key = |part: &str| format!("slack.templates.{name}.{part}");
        let sources = [
            ("header", template.header.clone()),
            ("text", Some(template.text.clone())),
            ("context", template.context.clone()),
            ("fallback", template.fallback.clone()),
        ];
        for (part, source) in sources {
            let Some(source) = source else { continue };
            let env = if part == "header" {
                &mut self.plain
            } else {
                &mut self.mrkdwn
            };
            env.add_template_owned(format!("{name}#{part}"), source)
                .map_err(|e| (key(part), describe(&e)))?;
        }
        for (i, field) in template.fields.iter().enumerate() {
            self.mrkdwn
                .add_template_owned(format!("{name}#field{i}"), field.clone())
                .map_err(|e| (key(&format!("fields[{i}]")), describe(&e)))?;
        }
        self.names.insert(name.to_string(), template.fields.len());
        // Unknown variables are configuration mistakes, found now rather than at 3 a.m.
        for (env, part) in self.parts(name) {
            let tpl = env.get_template(&part).expect("just added");
            for var in tpl.undeclared_variables(true) {
                if !known_variable(&var) {
                    let what = part.rsplit('#').next().unwrap_or_default();
                    let what = what
                        .strip_prefix("field")
                        .map_or(what.to_string(), |i| format!("fields[{i}]"));
                    return Err((
                        key(&what),
                        format!(
                            "unknown variable {var:?}; expected one of: {}",
                            variable_names().join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn parts(&self, name: &str) -> Vec<(&Environment<'static>, String)> {
        let mut out = Vec::new();
        for part in PARTS {
            let env = if part == "header" {
                &self.plain
            } else {
                &self.mrkdwn
            };
            let n = format!("{name}#{part}");
            if env.get_template(&n).is_ok() {
                out.push((env, n));
            }
        }
        for i in 0..self.names.get(name).copied().unwrap_or(0) {
            out.push((&self.mrkdwn, format!("{name}#field{i}")));
        }
        out
    }

    /// Checks that a rule may use template `name` with the personal fields it allows.
    pub fn check_use(&self, name: &str, personal: &[String]) -> Result<(), String> {
        if !self.names.contains_key(name) {
            return Err(format!(
                "unknown template {name:?}; expected one of the [slack.templates] names: {}",
                self.names
                    .keys()
                    .filter(|n| !n.starts_with("builtin:"))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for (env, part) in self.parts(name) {
            let tpl = env.get_template(&part).expect("listed");
            for var in tpl.undeclared_variables(true) {
                // The built-in templates show a personal value only when the rule allowed it
                // (the variable is absent otherwise); a rule's own template must say so.
                if name.starts_with("builtin:") {
                    continue;
                }
                for (variable, field) in [
                    ("customer.initial", "first_name_initial"),
                    ("question.note", "customer_note"),
                ] {
                    if var == variable && !personal.iter().any(|p| p == field) {
                        return Err(format!(
                            "template {name:?} shows {variable}, which is personal data: add \"{field}\" to the rule's personal list"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Renders template `name` with `vars`.
    pub fn render(&self, name: &str, vars: &serde_json::Value) -> Result<Rendered, String> {
        let ctx = Value::from_serialize(vars);
        let part = |env: &Environment<'static>, part: &str| -> Result<Option<String>, String> {
            match env.get_template(&format!("{name}#{part}")) {
                Ok(t) => t
                    .render(&ctx)
                    .map(|s| Some(drop_empty_links(s.trim())))
                    .map_err(|e| describe(&e)),
                Err(_) => Ok(None),
            }
        };
        let header = part(&self.plain, "header")?.filter(|h| !h.is_empty());
        let text = part(&self.mrkdwn, "text")?.unwrap_or_default();
        let mut fields = Vec::new();
        for i in 0..self.names.get(name).copied().unwrap_or(0) {
            if let Some(f) = part(&self.mrkdwn, &format!("field{i}"))? {
                if !f.is_empty() {
                    fields.push(f);
                }
            }
        }
        let context = part(&self.mrkdwn, "context")?.filter(|c| !c.is_empty());
        let fallback = match part(&self.mrkdwn, "fallback")? {
            Some(f) => f,
            None => header
                .as_deref()
                .map(escape_mrkdwn)
                .unwrap_or_else(|| text.lines().next().unwrap_or_default().to_string()),
        };
        Ok(Rendered {
            header,
            text,
            fields,
            context,
            fallback,
        })
    }
}

/// `<|Open in WooCommerce>` — a link whose URL came out empty (the shop has no admin URL) —
/// becomes its plain label: Slack would show the broken markup. Values are escaped before they
/// are inserted, so every `<` left is the template's own.
pub fn drop_empty_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('>');
        let bar = after.find('|');
        match (bar, close) {
            (Some(b), Some(c)) if b < c && after[..b].trim().is_empty() => {
                out.push_str(after[b + 1..c].trim());
                rest = &after[c + 1..];
            }
            (_, Some(c)) if after[..c].trim().is_empty() => rest = &after[c + 1..],
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn describe(e: &minijinja::Error) -> String {
    let mut m = e.to_string();
    if let Some(line) = e.line() {
        m = format!("{m} (template line {line})");
    }
    m
}

/// The Block Kit message rule `rule` posts for `alert`.
pub fn message_for(
    rules: &super::rules::Rules,
    rule: usize,
    alert: &Alert,
    admin_url: Option<String>,
) -> Result<super::blocks::Message, String> {
    let r = &rules.rules[rule];
    let name = r
        .template
        .clone()
        .unwrap_or_else(|| Templates::builtin_name(alert.kind));
    let settings = VariableSettings {
        admin_url,
        emoji: r.emoji.clone(),
        priority: r.priority.as_str(),
        allow_initial: r.personal.iter().any(|p| p == "first_name_initial"),
        allow_note: r.personal.iter().any(|p| p == "customer_note"),
    };
    let rendered = rules
        .templates
        .render(&name, &variables(alert, &settings))
        .map_err(|e| format!("template {name}: {e}"))?;
    Ok(super::blocks::build(&rendered))
}

/// What a rule's message may show about the shop's admin and customers.
#[derive(Clone, Debug, Default)]
pub struct VariableSettings {
    /// `{order_id}` replaced; None: no admin link.
    pub admin_url: Option<String>,
    pub emoji: Option<String>,
    pub priority: &'static str,
    pub allow_initial: bool,
    /// The rule allows the buyer's own words (a checkout note).
    pub allow_note: bool,
}

/// Money for people: thousands separated, two decimals ("12,340.00").
pub fn amount(d: Decimal) -> String {
    let d = d.round_dp(2);
    let s = format!("{:.2}", d.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!(
        "{}{grouped}.{frac}",
        if d.is_sign_negative() && !d.is_zero() {
            "-"
        } else {
            ""
        }
    )
}

pub fn title(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::OrderPlaced => "New order",
        AlertKind::OrderPaid => "Order paid",
        AlertKind::OrderStatusChanged => "Order status changed",
        AlertKind::PaymentFailed => "Payment failed",
        AlertKind::OrderRefunded => "Order refunded",
        AlertKind::HighValueOrder => "High-value order",
        AlertKind::FirstOrder => "First order",
        AlertKind::StockLow => "Stock low",
        AlertKind::OutOfStock => "Out of stock",
        AlertKind::BackInStock => "Back in stock",
        AlertKind::ReviewPosted => "New review",
        AlertKind::NegativeReview => "Negative review",
        AlertKind::SegmentChanged => "Customer segment changed",
        AlertKind::BecameVip => "New VIP customer",
        AlertKind::WebhookDisabled => "Webhook re-enabled",
        AlertKind::CustomerErased => "Customer erased",
        AlertKind::ReplenishmentDue => "Due to buy again",
        AlertKind::ChurnRiskChanged => "Churn risk changed",
        AlertKind::CustomerQuestion => "Customer question",
    }
}

pub fn default_emoji(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::OrderPlaced | AlertKind::FirstOrder => ":shopping_trolley:",
        AlertKind::OrderPaid => ":moneybag:",
        AlertKind::OrderStatusChanged => ":package:",
        AlertKind::PaymentFailed => ":x:",
        AlertKind::OrderRefunded => ":leftwards_arrow_with_hook:",
        AlertKind::HighValueOrder => ":gem:",
        AlertKind::StockLow => ":warning:",
        AlertKind::OutOfStock => ":no_entry:",
        AlertKind::BackInStock => ":white_check_mark:",
        AlertKind::ReviewPosted => ":star:",
        AlertKind::NegativeReview => ":rotating_light:",
        AlertKind::SegmentChanged => ":busts_in_silhouette:",
        AlertKind::BecameVip => ":crown:",
        AlertKind::WebhookDisabled => ":electric_plug:",
        AlertKind::CustomerErased => ":broom:",
        AlertKind::ReplenishmentDue => ":repeat:",
        AlertKind::ChurnRiskChanged => ":chart_with_downwards_trend:",
        AlertKind::CustomerQuestion => ":speech_balloon:",
    }
}

/// The variables a template sees for one alert.
pub fn variables(alert: &Alert, settings: &VariableSettings) -> serde_json::Value {
    let order = alert.order.as_ref().map(|o| {
        let mut categories: BTreeSet<i64> = BTreeSet::new();
        for i in &o.items {
            categories.extend(&i.category_ids);
        }
        json!({
            "id": o.order_id,
            "number": o.number,
            "status": o.status,
            "previous_status": o.previous_status,
            "currency": o.currency,
            "total": amount(o.total.amount()),
            "refunded": amount(o.refunded_total.amount()),
            "payment_method": o.payment_method,
            "payment_method_title": o.payment_method_title,
            "created_via": o.created_via,
            "items": o.items.iter().map(|i| json!({
                "name": i.name,
                "quantity": i.quantity,
                "total": amount(i.total.amount()),
                "sku": i.sku,
                "categories": i.category_ids,
            })).collect::<Vec<_>>(),
            "item_count": o.items.iter().map(|i| i.quantity as i64).sum::<i64>(),
            "categories": categories,
            "admin_url": settings.admin_url.as_ref().map(|u| u.replace("{order_id}", &o.order_id.to_string())),
        })
    });
    let customer = alert.customer.as_ref().map(|c| {
        let mut v = json!({
            "key": c.customer,
            "id": c.customer_id,
            "segment": c.segment,
            "previous_segment": c.previous_segment,
            "orders_count": c.orders_count,
            "revenue": amount(c.revenue.amount()),
            "clv": amount(c.clv_12_months.amount()),
            "p_alive": format!("{:.0}%", 100.0 * c.p_alive),
            "churn_risk": c.churn_risk.to_lowercase(),
            "previous_churn_risk": c.previous_churn_risk.as_deref().map(str::to_lowercase),
            "vip": c.vip,
            "top_category": c.top_category,
            "typical_interval": c.typical_interval_days.map(days),
            "next_purchase": c.expected_next_purchase_at.map(|t| t.format("%Y-%m-%d").to_string()),
        });
        if settings.allow_initial {
            v["initial"] = json!(c.first_name_initial);
        }
        v
    });
    let product = alert.product.as_ref().map(|p| {
        json!({
            "id": p.product_id,
            "parent_id": p.parent_id,
            "name": p.name,
            "sku": p.sku,
            "stock": p.stock_quantity,
            "previous_stock": p.previous_stock_quantity,
            "stock_status": p.stock_status,
            "threshold": p.low_stock_threshold,
            "categories": p.category_ids,
        })
    });
    let review = alert.review.as_ref().map(|r| {
        let stars = r.rating.clamp(0, 5) as usize;
        json!({
            "id": r.review_id,
            "product_id": r.product_id,
            "product_name": r.product_name,
            "rating": r.rating,
            "stars": format!("{}{}", "★".repeat(stars), "☆".repeat(5 - stars)),
            "verified": r.verified,
            "text": r.text,
        })
    });
    let replenishment = alert.replenishment.as_ref().map(|r| {
        json!({
            "product_id": r.product_id,
            "product_name": r.name,
            "last_bought": r.last_bought_at.format("%Y-%m-%d").to_string(),
            "interval": days(r.interval_days),
            "due": r.due_at.format("%Y-%m-%d").to_string(),
        })
    });
    // The buyer's own words: only under a rule that allows personal text.
    let question = alert.question.as_ref().map(|q| {
        if settings.allow_note && !q.note.is_empty() {
            json!({"note": q.note})
        } else {
            json!({})
        }
    });
    json!({
        "kind": alert.kind.as_str(),
        "title": title(alert.kind),
        "emoji": settings.emoji.clone().unwrap_or_else(|| default_emoji(alert.kind).to_string()),
        "priority": settings.priority,
        "shop": alert.shop_id,
        "occurred_at": alert.occurred_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        "alert_id": alert.alert_id,
        "correlation_id": alert.correlation_id,
        "order": order,
        "customer": customer,
        "product": product,
        "review": review,
        "replenishment": replenishment,
        "question": question,
    })
}

/// A number of days for people: "~30 days", "1 day".
fn days(d: f64) -> String {
    let n = d.round().max(0.0) as i64;
    if n == 1 {
        "1 day".into()
    } else {
        format!("~{n} days")
    }
}

/// Every variable path a template may use.
fn variable_tree() -> serde_json::Value {
    json!({
        "kind": "", "title": "", "emoji": "", "priority": "", "shop": "", "occurred_at": "",
        "alert_id": "", "correlation_id": "",
        "order": {"id": 0, "number": "", "status": "", "previous_status": "", "currency": "",
            "total": "", "refunded": "", "payment_method": "", "payment_method_title": "",
            "created_via": "", "items": [], "item_count": 0, "categories": [], "admin_url": ""},
        "customer": {"key": "", "id": 0, "segment": "", "previous_segment": "", "orders_count": 0,
            "revenue": "", "clv": "", "p_alive": "", "churn_risk": "", "previous_churn_risk": "",
            "vip": false, "initial": "", "top_category": "", "typical_interval": "",
            "next_purchase": ""},
        "product": {"id": 0, "parent_id": 0, "name": "", "sku": "", "stock": 0, "previous_stock": 0,
            "stock_status": "", "threshold": 0, "categories": []},
        "review": {"id": 0, "product_id": 0, "product_name": "", "rating": 0, "stars": "",
            "verified": false, "text": ""},
        "replenishment": {"product_id": 0, "product_name": "", "last_bought": "", "interval": "",
            "due": ""},
        "question": {"note": ""},
    })
}

fn known_variable(path: &str) -> bool {
    let tree = variable_tree();
    let mut at = &tree;
    for segment in path.split('.') {
        match at.get(segment) {
            Some(next) => at = next,
            // Members of lists (items) are checked at render time.
            None => return at.is_array(),
        }
    }
    true
}

fn variable_names() -> Vec<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        if let Some(map) = v.as_object() {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if child.is_object() {
                    walk(&path, child, out);
                } else {
                    out.push(path);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk("", &variable_tree(), &mut out);
    out
}

/// The built-in template of each kind: what a team wants to see, no personal data.
fn builtin(kind: AlertKind) -> SlackTemplate {
    let order_fields = vec![
        "*Total*\n{{ order.total }} {{ order.currency }}".to_string(),
        "*Payment*\n{{ order.payment_method_title or order.payment_method or 'n/a' }}".to_string(),
        "*Customer*\n{{ customer.segment }}{% if customer.vip %} · VIP{% endif %} · CLV {{ customer.clv }} {{ order.currency }}".to_string(),
        "*Status*\n{{ order.status }}".to_string(),
    ];
    let items = "{% for item in order.items %}• {{ item.quantity }} × {{ item.name }} — {{ item.total }}\n{% endfor %}";
    let link = "{% if order.admin_url %}<{{ order.admin_url }}|Open in WooCommerce>{% endif %}";
    let order = |header: &str, lead: &str| SlackTemplate {
        header: Some(format!("{{{{ emoji }}}} {header} #{{{{ order.number }}}}")),
        text: format!("{lead}{items}"),
        fields: order_fields.clone(),
        context: Some(format!("{{{{ shop }}}} · {{{{ occurred_at }}}} · {link}")),
        fallback: Some(format!(
            "{header} #{{{{ order.number }}}}: {{{{ order.total }}}} {{{{ order.currency }}}}"
        )),
    };
    match kind {
        AlertKind::OrderPlaced => order("New order", ""),
        AlertKind::OrderPaid => order("Order paid", ""),
        AlertKind::FirstOrder => order("First order from a new customer", ""),
        AlertKind::HighValueOrder => order("High-value order", "*{{ order.total }} {{ order.currency }}* — well above this shop's usual order.\n"),
        AlertKind::PaymentFailed => order("Payment failed", "Payment with {{ order.payment_method_title or order.payment_method or 'unknown method' }} failed.\n"),
        AlertKind::OrderRefunded => order("Order refunded", "Refunded {{ order.refunded }} of {{ order.total }} {{ order.currency }}.\n"),
        AlertKind::OrderStatusChanged => order("Order", "Status *{{ order.previous_status }}* → *{{ order.status }}*\n"),
        AlertKind::StockLow | AlertKind::OutOfStock | AlertKind::BackInStock => SlackTemplate {
            header: Some("{{ emoji }} {{ title }}: {{ product.name }}".into()),
            text: "Stock {% if product.previous_stock is not none %}{{ product.previous_stock }} → {% endif %}*{{ product.stock if product.stock is not none else product.stock_status }}* (threshold {{ product.threshold }}){% if product.sku %} · SKU {{ product.sku }}{% endif %}".into(),
            fields: Vec::new(),
            context: Some("{{ shop }} · {{ occurred_at }}".into()),
            fallback: Some("{{ title }}: {{ product.name }}".into()),
        },
        AlertKind::ReviewPosted | AlertKind::NegativeReview => SlackTemplate {
            header: Some("{{ emoji }} {{ title }}: {{ review.product_name or 'a product' }}".into()),
            text: "{{ review.stars }}{% if review.verified %} · verified buyer{% endif %}\n>{{ review.text }}".into(),
            fields: Vec::new(),
            context: Some("{{ shop }} · {{ occurred_at }}".into()),
            fallback: Some("{{ title }} ({{ review.rating }}/5): {{ review.product_name or 'a product' }}".into()),
        },
        // Never posted: the Slack sink forgets the person's threads instead.
        AlertKind::CustomerErased => SlackTemplate {
            header: None,
            text: "{{ title }}".into(),
            fields: Vec::new(),
            context: None,
            fallback: None,
        },
        AlertKind::WebhookDisabled => SlackTemplate {
            header: Some("{{ emoji }} {{ title }}".into()),
            text: "WooCommerce had disabled a webhook of this shop after failed deliveries; woostream set it active again. Deliveries in between were lost to the webhook path and have been reconciled through the REST API.".into(),
            fields: Vec::new(),
            context: Some("{{ shop }} · {{ occurred_at }}".into()),
            fallback: Some("{{ title }} ({{ shop }})".into()),
        },
        AlertKind::ReplenishmentDue => SlackTemplate {
            header: Some("{{ emoji }} {{ title }}: {{ replenishment.product_name or 'a product' }}".into()),
            text: "Customer {{ customer.id or customer.key }} usually buys *{{ replenishment.product_name or 'this product' }}* again after {{ replenishment.interval }}; last bought {{ replenishment.last_bought }}, due since {{ replenishment.due }}.".into(),
            fields: vec![
                "*Segment*\n{{ customer.segment }}{% if customer.vip %} · VIP{% endif %}".into(),
                "*CLV (12 months)*\n{{ customer.clv }}".into(),
                "*Buys most*\n{{ customer.top_category or 'n/a' }}".into(),
                "*Rhythm*\n{{ customer.typical_interval or 'n/a' }}".into(),
            ],
            context: Some("{{ shop }} · {{ occurred_at }}".into()),
            fallback: Some("{{ title }}: {{ replenishment.product_name or 'a product' }}".into()),
        },
        AlertKind::ChurnRiskChanged => SlackTemplate {
            header: Some("{{ emoji }} {{ title }}".into()),
            text: "Customer {{ customer.id or customer.key }}: churn risk *{{ customer.previous_churn_risk }}* → *{{ customer.churn_risk }}*".into(),
            fields: vec![
                "*Segment*\n{{ customer.segment }}".into(),
                "*P(alive)*\n{{ customer.p_alive }}".into(),
                "*CLV (12 months)*\n{{ customer.clv }}".into(),
                "*Next purchase expected*\n{{ customer.next_purchase or 'not within a year' }}".into(),
            ],
            context: Some("{{ shop }} · {{ occurred_at }}".into()),
            fallback: Some("{{ title }}: {{ customer.previous_churn_risk }} → {{ customer.churn_risk }}".into()),
        },
        AlertKind::CustomerQuestion => SlackTemplate {
            header: Some("{{ emoji }} {{ title }} on order #{{ order.number }}".into()),
            text: "{% if question.note %}>{{ question.note }}{% else %}The buyer left a note at checkout. It is personal text: a rule shows it only with \"customer_note\" in its personal list.{% endif %}".into(),
            fields: order_fields.clone(),
            context: Some(format!("{{{{ shop }}}} · {{{{ occurred_at }}}} · {link}")),
            fallback: Some("{{ title }} on order #{{ order.number }}".into()),
        },
        AlertKind::SegmentChanged | AlertKind::BecameVip => SlackTemplate {
            header: Some("{{ emoji }} {{ title }}".into()),
            text: "Customer {{ customer.id or customer.key }}: {% if customer.previous_segment %}*{{ customer.previous_segment }}* → {% endif %}*{{ customer.segment }}*".into(),
            fields: vec![
                "*CLV (12 months)*\n{{ customer.clv }}".into(),
                "*Orders*\n{{ customer.orders_count }} · {{ customer.revenue }}".into(),
                "*P(alive)*\n{{ customer.p_alive }}".into(),
                "*Churn risk*\n{{ customer.churn_risk }}".into(),
            ],
            context: Some("{{ shop }} · {{ occurred_at }}".into()),
            fallback: Some("{{ title }}: {{ customer.segment }}".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slack::examples::order_alert;

    #[test]
    fn a_link_whose_url_is_empty_leaves_its_label_not_broken_markup() {
        assert_eq!(
            drop_empty_links("Order <|Open in WooCommerce> now"),
            "Order Open in WooCommerce now"
        );
        assert_eq!(drop_empty_links("a < |x> b <> c"), "a x b  c");
        let kept = "<https://shop.example/wp-admin/post.php?post=7|Open> &lt;x&gt; <!here>";
        assert_eq!(drop_empty_links(kept), kept);
        assert_eq!(drop_empty_links("unclosed <|x"), "unclosed <|x");
    }

    #[test]
    fn values_are_escaped_for_mrkdwn_but_the_template_text_is_not() {
        let mut t = BTreeMap::new();
        t.insert(
            "t".to_string(),
            SlackTemplate {
                header: Some("{{ order.items[0].name }}".into()),
                text: "<{{ order.admin_url }}|Order {{ order.number }}>: {{ order.items[0].name }}"
                    .into(),
                ..SlackTemplate::default()
            },
        );
        let templates = Templates::compile(&t).unwrap();
        let mut a = order_alert(7, AlertKind::OrderPaid, "10");
        a.order.as_mut().unwrap().items[0].name = "Mugs & <Cups> <!channel>".into();
        let vars = variables(
            &a,
            &VariableSettings {
                admin_url: Some("https://s.example/post.php?post={order_id}".into()),
                ..VariableSettings::default()
            },
        );
        let r = templates.render("t", &vars).unwrap();
        assert_eq!(
            r.text,
            "<https://s.example/post.php?post=7|Order 7>: Mugs &amp; &lt;Cups&gt; &lt;!channel&gt;"
        );
        // The header is plain text: shown as written, nothing to escape.
        assert_eq!(r.header.as_deref(), Some("Mugs & <Cups> <!channel>"));
    }

    #[test]
    fn a_customer_note_is_shown_only_under_a_rule_that_allows_it_and_escaped() {
        let a = order_alert(7, AlertKind::CustomerQuestion, "10");
        let templates = Templates::compile(&BTreeMap::new()).unwrap();
        let name = Templates::builtin_name(AlertKind::CustomerQuestion);
        let hidden = templates
            .render(&name, &variables(&a, &VariableSettings::default()))
            .unwrap();
        assert!(!hidden.text.contains("gift-wrap"), "{}", hidden.text);
        assert!(hidden.text.contains("customer_note"), "says how to show it");
        let allowed = VariableSettings {
            allow_note: true,
            ..VariableSettings::default()
        };
        let shown = templates.render(&name, &variables(&a, &allowed)).unwrap();
        assert!(
            shown
                .text
                .contains("Can you gift-wrap it? &lt;b&gt;thanks&lt;/b&gt; &amp; see you"),
            "{}",
            shown.text
        );
        // A rule's own template showing the note must list it as allowed.
        let mut own = BTreeMap::new();
        own.insert(
            "q".to_string(),
            SlackTemplate {
                text: "{{ question.note }}".into(),
                ..SlackTemplate::default()
            },
        );
        let templates = Templates::compile(&own).unwrap();
        assert!(templates
            .check_use("q", &[])
            .unwrap_err()
            .contains("customer_note"));
        assert!(templates.check_use("q", &["customer_note".into()]).is_ok());
    }

    #[test]
    fn replenishment_and_churn_alerts_say_what_to_act_on() {
        let templates = Templates::compile(&BTreeMap::new()).unwrap();
        let due = order_alert(7, AlertKind::ReplenishmentDue, "10");
        let r = templates
            .render(
                &Templates::builtin_name(AlertKind::ReplenishmentDue),
                &variables(&due, &VariableSettings::default()),
            )
            .unwrap();
        assert!(
            r.text.contains("*Mug*") && r.text.contains("~30 days"),
            "{}",
            r.text
        );
        assert!(r.text.contains("due since 2026-11-06"), "{}", r.text);
        let churn = order_alert(8, AlertKind::ChurnRiskChanged, "10");
        let mut churn = churn;
        churn.customer.as_mut().unwrap().churn_risk = "HIGH".into();
        let r = templates
            .render(
                &Templates::builtin_name(AlertKind::ChurnRiskChanged),
                &variables(&churn, &VariableSettings::default()),
            )
            .unwrap();
        assert!(r.text.contains("*low* → *high*"), "{}", r.text);
    }

    #[test]
    fn personal_data_appears_only_when_the_rule_allows_it() {
        let a = order_alert(7, AlertKind::OrderPaid, "10");
        let hidden = variables(&a, &VariableSettings::default());
        assert!(hidden["customer"].get("initial").is_none());
        let shown = variables(
            &a,
            &VariableSettings {
                allow_initial: true,
                ..VariableSettings::default()
            },
        );
        assert_eq!(shown["customer"]["initial"], "J");
        // Alerts carry no email, phone or address at all.
        let text = serde_json::to_string(&shown).unwrap();
        assert!(!text.contains('@'));
    }

    #[test]
    fn every_builtin_template_renders_every_kind_without_personal_data() {
        let templates = Templates::compile(&BTreeMap::new()).unwrap();
        for kind in AlertKind::ALL {
            let a = order_alert(7, kind, "1234.5");
            let r = templates
                .render(
                    &Templates::builtin_name(kind),
                    &variables(&a, &VariableSettings::default()),
                )
                .unwrap();
            assert!(!r.fallback.is_empty(), "{kind:?}");
            assert!(!format!("{r:?}").contains("none"), "{kind:?}: {r:?}");
        }
        assert_eq!(amount(Decimal::new(1234050, 2)), "12,340.50");
        assert_eq!(amount(Decimal::new(-5, 1)), "-0.50");
    }
}
