//! The work of one input partition, without Kafka: customer state in, profiles and alerts out.
//!
//! Everything here is a deterministic function of the records of the partition, in order, and
//! of the model: replaying the same records from the same restored state gives the same profile
//! versions and the same alert ids. That is what makes a crash or a rebalance invisible to
//! consumers that drop what they already applied.

use std::collections::HashMap;
use std::sync::Arc;

use rust_decimal::prelude::ToPrimitive;
use woostream_core::catalogue::{NameBook, NoNames};
use woostream_core::config::HighValueOrder;
use woostream_core::contract::enriched::{Alert, AlertKey, ChurnRisk, CustomerProfile, Segment};
use woostream_core::contract::events::{CustomerKey, Order, OrderEvent};

use crate::alerts::{customer_key, CustomerTransition, Origin};
use crate::customer::{
    self, from_millis, Cause, CustomerState, OrderChange, ScoringSettings, DAY_MS,
};
use crate::model::Model;

/// What processing one record produced, in the order it must be written.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    /// Profile versions; `None` is an erasure tombstone. With [`Settings::defer_profiles`],
    /// only tombstones: the partition keeps each customer's newest version until
    /// [`CustomerPartition::take_profiles`].
    pub profiles: Vec<(CustomerKey, Option<CustomerProfile>)>,
    pub alerts: Vec<(AlertKey, Alert)>,
}

/// A profile version decided but not built: what the profile needs beyond the customer's
/// state. The state changes only with a new version, so building it later from the state
/// gives the same profile as building it at once.
#[derive(Debug, Clone, PartialEq)]
struct ProfileDraft {
    scored: customer::Scored,
    replenishment: Vec<woostream_core::contract::enriched::Replenishment>,
    model_version: i64,
    partition: i32,
    offset: i64,
    event_id: String,
    correlation_id: String,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty() && self.alerts.is_empty()
    }
}

/// Settings that shape profiles and alerts.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub scoring: ScoringSettings,
    pub high_value_order: HighValueOrder,
    /// How far past a product's repurchase interval a customer is due (0.2 = 20 %).
    pub replenishment_margin: f64,
    /// Product and category names for profiles and alerts.
    pub names: Names,
    /// Keep each customer's newest version in the partition instead of building every version
    /// into the output: the runner writes one version per customer and commit, and in a sale
    /// most versions are replaced before the commit (building them was a tenth of its time).
    pub defer_profiles: bool,
}

/// The catalogue's names, shared by every partition.
#[derive(Clone)]
pub struct Names(pub Arc<dyn NameBook>);

impl Default for Names {
    fn default() -> Self {
        Names(Arc::new(NoNames))
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Names")
    }
}

impl PartialEq for Names {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Settings {
    /// The settings `[enricher]` configures.
    pub fn from_config(e: &woostream_core::config::EnricherConfig) -> anyhow::Result<Settings> {
        Ok(Settings {
            scoring: ScoringSettings {
                clv_months: e.clv_months,
                monthly_discount_rate: e.monthly_discount_rate,
            },
            high_value_order: e
                .high_value_order()
                .map_err(|m| anyhow::anyhow!("enricher.high_value_order: {m}"))?,
            replenishment_margin: e.replenishment_margin,
            names: Names::default(),
            defer_profiles: false,
        })
    }
}

/// State is keyed by shop and customer together: one partition can hold several shops.
fn state_key(shop_id: &str, customer: &str) -> Box<str> {
    format!("{shop_id}\u{1f}{customer}").into_boxed_str()
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('\u{1f}').unwrap_or(("", key))
}

/// The customers of one partition of the orders topic.
#[derive(Debug, Default)]
pub struct CustomerPartition {
    pub partition: i32,
    customers: HashMap<Box<str>, CustomerState>,
    /// Newest UTC day this partition has seen; crossing into a new day rescores everyone.
    watermark_day: i64,
    /// Customers still to rescore with a newly arrived model, in a stable order.
    model_rescore: Vec<Box<str>>,
    /// "Now" on the wall clock when `enricher.clock = "wall"`; None: stream time, the time
    /// of each event.
    wall_clock_ms: Option<i64>,
    /// The newest "now" this partition has scored at: what a new model's rescore scores as of.
    now_ms: i64,
    /// Each customer's newest version not yet taken ([`Settings::defer_profiles`]).
    unwritten: HashMap<Box<str>, ProfileDraft>,
}

impl CustomerPartition {
    pub fn new(partition: i32) -> CustomerPartition {
        CustomerPartition {
            partition,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.customers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
    }

    /// (shop, customer, state) of every customer.
    pub fn customers(&self) -> impl Iterator<Item = (&str, &str, &CustomerState)> {
        self.customers.iter().map(|(k, v)| {
            let (shop, customer) = split_key(k);
            (shop, customer, v)
        })
    }

    /// Takes a restored profile as this customer's state.
    pub fn restore(&mut self, profile: &CustomerProfile) {
        self.now_ms = self.now_ms.max(customer::millis(profile.as_of));
        self.watermark_day = self
            .watermark_day
            .max(customer::millis(profile.as_of).div_euclid(DAY_MS));
        self.customers.insert(
            state_key(&profile.shop_id, &profile.customer),
            customer::from_profile(profile),
        );
    }

    /// Whether versions are waiting for [`CustomerPartition::take_profiles`].
    pub fn has_unwritten(&self) -> bool {
        !self.unwritten.is_empty()
    }

    /// Builds the newest version of each customer kept since the last call, with its taste.
    pub fn take_profiles(&mut self, settings: &Settings) -> Vec<(CustomerKey, CustomerProfile)> {
        let mut drafts: Vec<_> = self.unwritten.drain().collect();
        // A stable order, so that replays write the same sequence.
        drafts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        drafts
            .into_iter()
            .filter_map(|(composite, draft)| {
                let state = self.customers.get(&composite)?;
                let (shop_id, customer) = split_key(&composite);
                let cause = Cause {
                    partition: draft.partition,
                    offset: draft.offset,
                    event_id: &draft.event_id,
                    correlation_id: &draft.correlation_id,
                };
                let taste = crate::taste::taste_of(state, shop_id, &*settings.names.0);
                let profile = customer::to_profile(
                    shop_id,
                    customer,
                    state,
                    &draft.scored,
                    taste,
                    &draft.replenishment,
                    draft.model_version,
                    &cause,
                );
                let key = CustomerKey {
                    shop_id: shop_id.into(),
                    customer: customer.into(),
                };
                Some((key, profile))
            })
            .collect()
    }

    /// Forgets a customer (an erasure) and returns the tombstone for the profile topic.
    pub fn erase(&mut self, key: &CustomerKey) -> Output {
        let composite = state_key(&key.shop_id, &key.customer);
        self.customers.remove(&composite);
        self.unwritten.remove(&composite);
        Output {
            profiles: vec![(key.clone(), None)],
            alerts: Vec::new(),
        }
    }

    /// An erasure (`erasure_id`): the person's state dropped, their profile tombstoned, and a
    /// `customer_erased` alert naming their orders, so that the sinks forget them too.
    pub fn erase_person(
        &mut self,
        key: &CustomerKey,
        erasure_id: &str,
        origin: &Origin<'_>,
    ) -> Output {
        let composite = state_key(&key.shop_id, &key.customer);
        let state = self.customers.remove(&composite);
        self.unwritten.remove(&composite);
        let order_ids = state
            .map(|s| s.orders.iter().map(|o| o.order_id).collect())
            .unwrap_or_default();
        let mut alert = origin.alert(
            woostream_core::contract::enriched::AlertKind::CustomerErased,
            &[erasure_id, &key.customer],
        );
        alert.erasure = Some(woostream_core::contract::enriched::AlertErasure {
            erasure_id: erasure_id.to_string(),
            order_ids,
        });
        Output {
            profiles: vec![(key.clone(), None)],
            alerts: vec![(customer_key(&key.shop_id, &key.customer), alert)],
        }
    }

    /// Applies one order delivery at input `offset`.
    pub fn on_order(
        &mut self,
        key: &CustomerKey,
        event: &OrderEvent,
        offset: i64,
        model: &Model,
        settings: &Settings,
    ) -> Output {
        let event_ms = customer::order_event_time(event);
        // The moment scores refer to: the event's time, or the wall clock's now.
        let now_ms = self.wall_clock_ms.map_or(event_ms, |w| w.max(event_ms));
        self.now_ms = self.now_ms.max(now_ms);
        let cause = Cause {
            partition: self.partition,
            offset,
            event_id: &event.envelope.event_id,
            correlation_id: &event.envelope.correlation_id,
        };
        let mut out = Output::default();
        // Time passing changes segments even without orders: on a new day, rescore everyone
        // as of its start, before this order is applied.
        let day = now_ms.div_euclid(DAY_MS);
        if day > self.watermark_day {
            if self.watermark_day > 0 {
                self.rescore(&mut out, day * DAY_MS, model, settings, &cause, event);
            }
            self.watermark_day = day;
        }
        let state = self
            .customers
            .entry(state_key(&key.shop_id, &key.customer))
            .or_default();
        let Some(change) = state.apply_order(event) else {
            return out;
        };
        let (previous_segment, was_vip, previous_churn) =
            (state.segment, state.vip, state.churn_risk);
        state.version += 1;
        state.as_of_ms = state.as_of_ms.max(now_ms);
        state.source_offset = offset;
        let scored = customer::score(state, model, &settings.scoring, state.as_of_ms);
        let order = event.order.as_ref();
        let high_value = |o: &Order| match settings.high_value_order {
            HighValueOrder::Amount(a) => o.total.amount() >= a,
            HighValueOrder::Percentile(_) => model
                .order_value_p95
                .is_some_and(|p95| o.total.amount().to_f64().is_some_and(|t| t >= p95)),
        };
        let origin = Origin {
            shop_id: &key.shop_id,
            occurred_at: from_millis(event_ms),
            correlation_id: &event.envelope.correlation_id,
            event_id: &event.envelope.event_id,
            source: event.envelope.origin,
        };
        let why = Why {
            origin,
            cause: &cause,
            previous: (previous_segment, was_vip),
            previous_churn,
            order: order.map(|o| (o, &change)),
            high_value: &high_value,
        };
        write_version(
            &mut out,
            &mut self.unwritten,
            &key.shop_id,
            &key.customer,
            state,
            scored,
            model,
            settings,
            why,
        );
        out
    }

    /// Scores against the wall clock's `now_ms` instead of the event's time until set again
    /// (None: stream time).
    pub fn set_wall_clock(&mut self, now_ms: Option<i64>) {
        self.wall_clock_ms = now_ms;
    }

    /// A new model arrived: every customer is rescored with it, a few at a time
    /// ([`CustomerPartition::rescore_with_models`]).
    pub fn queue_model_rescore(&mut self) {
        let mut keys: Vec<Box<str>> = self.customers.keys().cloned().collect();
        // Reversed, so that popping from the end goes in key order.
        keys.sort_unstable_by(|a, b| b.cmp(a));
        self.model_rescore = keys;
    }

    /// Customers still waiting for a new model's rescore.
    pub fn model_rescore_pending(&self) -> usize {
        self.model_rescore.len()
    }

    /// Rescores up to `budget` queued customers with their shop's current model, as of their
    /// own time; a new version only where something visible changes (segment, churn band,
    /// VIP flag, a replenishment falling due). Returns the output and the customers looked at.
    pub fn rescore_with_models(
        &mut self,
        model_of: &dyn Fn(&str) -> std::sync::Arc<Model>,
        settings: &Settings,
        budget: usize,
    ) -> (Output, usize) {
        let mut out = Output::default();
        let mut used = 0;
        while used < budget {
            let Some(composite) = self.model_rescore.pop() else {
                break;
            };
            used += 1;
            let (shop_id, customer) = split_key(&composite);
            let model = model_of(shop_id);
            let Some(state) = self.customers.get_mut(&composite) else {
                continue;
            };
            if state.model_version == model.version || state.orders.is_empty() {
                continue;
            }
            state.model_version = model.version;
            // As of the partition's now: a customer's own last event may be months old.
            let as_of_ms = state.as_of_ms.max(self.now_ms);
            let event_id = format!("model:{}", model.version);
            let cause = Cause {
                partition: self.partition,
                offset: state.source_offset,
                event_id: &event_id,
                correlation_id: &event_id,
            };
            let source = woostream_core::contract::events::Origin::Webhook;
            let who = (shop_id, customer);
            rescore_customer(
                &mut out,
                &mut self.unwritten,
                who,
                state,
                &model,
                settings,
                as_of_ms,
                &cause,
                source,
            );
        }
        (out, used)
    }

    /// Rescores every customer as of `as_of_ms`; a new version only for those whose segment,
    /// churn-risk band or VIP flag changed (the rest would only restate decimals).
    fn rescore(
        &mut self,
        out: &mut Output,
        as_of_ms: i64,
        model: &Model,
        settings: &Settings,
        cause: &Cause,
        event: &OrderEvent,
    ) {
        let mut keys: Vec<&Box<str>> = self.customers.keys().collect();
        // A stable order, so that replays write the same sequence.
        keys.sort_unstable();
        let keys: Vec<Box<str>> = keys.into_iter().cloned().collect();
        for composite in keys {
            let (shop_id, customer) = split_key(&composite);
            let state = self.customers.get_mut(&composite).expect("key just listed");
            if state.as_of_ms >= as_of_ms || state.orders.is_empty() {
                continue;
            }
            let who = (shop_id, customer);
            let source = event.envelope.origin;
            rescore_customer(
                out,
                &mut self.unwritten,
                who,
                state,
                model,
                settings,
                as_of_ms,
                cause,
                source,
            );
        }
    }
}

/// Rescores one customer as of `as_of_ms` and writes a new version when something visible
/// changes: segment, churn band, VIP flag, or a product falling due (the rest would only
/// restate decimals).
#[allow(clippy::too_many_arguments)]
fn rescore_customer(
    out: &mut Output,
    unwritten: &mut HashMap<Box<str>, ProfileDraft>,
    (shop_id, customer): (&str, &str),
    state: &mut CustomerState,
    model: &Model,
    settings: &Settings,
    as_of_ms: i64,
    cause: &Cause,
    source: woostream_core::contract::events::Origin,
) {
    let scored = customer::score(state, model, &settings.scoring, as_of_ms);
    let due = || {
        crate::taste::any_newly_due(
            state,
            &model.repurchase_days,
            settings.replenishment_margin,
            as_of_ms,
        )
    };
    if !visible_change(state, &scored) && !due() {
        return;
    }
    let (previous_segment, was_vip, previous_churn) = (state.segment, state.vip, state.churn_risk);
    state.version += 1;
    state.as_of_ms = as_of_ms;
    state.source_offset = cause.offset;
    let origin = Origin {
        shop_id,
        occurred_at: from_millis(as_of_ms),
        correlation_id: cause.correlation_id,
        event_id: cause.event_id,
        source,
    };
    let why = Why {
        origin,
        cause,
        previous: (previous_segment, was_vip),
        previous_churn,
        order: None,
        high_value: &|_| false,
    };
    write_version(
        out, unwritten, shop_id, customer, state, scored, model, settings, why,
    );
}

/// Whether a rescore changes what the last profile said (segment, churn band, VIP flag):
/// the rest would only restate decimals. Without a counted order there is neither segment
/// nor band to change.
fn visible_change(state: &CustomerState, scored: &customer::Scored) -> bool {
    let counted = scored.summary.orders_count > 0;
    counted.then_some(scored.segment) != state.segment
        || counted.then_some(scored.churn_risk) != state.churn_risk
        || scored.vip != state.vip
}

/// What caused a new customer version, for its alerts and profile.
struct Why<'a> {
    origin: Origin<'a>,
    cause: &'a Cause<'a>,
    /// Segment and VIP flag before the change.
    previous: (Option<Segment>, bool),
    /// Churn-risk band before the change (`None`: no profile yet).
    previous_churn: Option<ChurnRisk>,
    order: Option<(&'a Order, &'a OrderChange)>,
    high_value: &'a dyn Fn(&Order) -> bool,
}

/// Writes a customer's new version: the alerts of the transition, then the profile; and
/// remembers what the profile said, to announce the next change.
#[allow(clippy::too_many_arguments)]
fn write_version(
    out: &mut Output,
    unwritten: &mut HashMap<Box<str>, ProfileDraft>,
    shop_id: &str,
    customer: &str,
    state: &mut CustomerState,
    scored: customer::Scored,
    model: &Model,
    settings: &Settings,
    why: Why,
) {
    let names = &*settings.names.0;
    let scored = scored.with_next_purchase(state, state.as_of_ms);
    let (mut replenishment, due) = crate::taste::replenishment(
        state,
        &model.repurchase_days,
        settings.replenishment_margin,
        state.as_of_ms,
        shop_id,
        names,
    );
    // Taste is computed here only when an alert shows it or a profile is built now; deferred
    // versions get it when they are built ([`CustomerPartition::take_profiles`]): in a sale
    // most versions of a customer are replaced by a newer one before the commit writes them.
    let taste = std::cell::OnceCell::new();
    let taste_of = |st: &CustomerState| crate::taste::taste_of(st, shop_id, names);
    let alerts = {
        let st: &CustomerState = state;
        let taste_of = || taste_of(st);
        let transition = CustomerTransition {
            origin: why.origin,
            customer,
            state: st,
            scored: &scored,
            taste: &taste,
            taste_of: &taste_of,
            previous_segment: why.previous.0,
            was_vip: why.previous.1,
            previous_churn: why.previous_churn,
            order: why.order,
            high_value: why.high_value,
            replenishment_due: &due,
        };
        transition.alerts()
    };
    let alert_key = customer_key(shop_id, customer);
    out.alerts
        .extend(alerts.into_iter().map(|a| (alert_key.clone(), a)));
    // A customer without a counted order has no segment to leave yet.
    state.segment = (scored.summary.orders_count > 0).then_some(scored.segment);
    state.churn_risk = (scored.summary.orders_count > 0).then_some(scored.churn_risk);
    state.vip = scored.vip;
    state.model_version = model.version;
    // Announced cycles are remembered; cycles no longer listed (bought again) are forgotten.
    for r in &mut replenishment {
        if due.iter().any(|d| d.product_id == r.product_id) {
            r.announced = true;
        }
    }
    state.replenishment_announced = replenishment
        .iter()
        .filter(|r| r.announced)
        .map(|r| (r.product_id, customer::millis(r.last_bought_at)))
        .collect();
    if settings.defer_profiles {
        let draft = ProfileDraft {
            scored,
            replenishment,
            model_version: model.version,
            partition: why.cause.partition,
            offset: why.cause.offset,
            event_id: why.cause.event_id.into(),
            correlation_id: why.cause.correlation_id.into(),
        };
        unwritten.insert(state_key(shop_id, customer), draft);
        return;
    }
    let profile = customer::to_profile(
        shop_id,
        customer,
        state,
        &scored,
        taste.into_inner().unwrap_or_else(|| taste_of(state)),
        &replenishment,
        model.version,
        why.cause,
    );
    let key = CustomerKey {
        shop_id: shop_id.into(),
        customer: customer.into(),
    };
    out.profiles.push((key, Some(profile)));
}
