//! The insight page: server-rendered HTML (minijinja, HTML-escaped) with SVG charts drawn by
//! plotters on the server. No script and nothing fetched from elsewhere: the page works
//! offline and behind any proxy. Every chart carries the numbers it draws in `data-values`,
//! and a table beside it says them again for people and screen readers.

use minijinja::{context, Environment};
use plotters::prelude::*;
use serde_json::json;

use crate::figures::Summary;

const WIDTH: u32 = 560;

/// Text a chart may draw: plotters writes SVG text content as given, so the characters that
/// would be markup there go.
fn label(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '<' | '>' | '&'))
        .take(40)
        .collect()
}

fn svg(
    height: u32,
    draw: impl FnOnce(DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|_| draw(root.clone()))
            .and_then(|_| root.present().map_err(|e| e.to_string()));
        if let Err(e) = drawn {
            tracing::warn!(error = %e, "An insight chart could not be drawn.");
        }
    }
    out
}

/// Horizontal bars, one per label, each with its value written at its end.
pub fn bars(labels: &[String], values: &[f64], decimals: usize, colour: RGBColor) -> String {
    let n = labels.len().max(1);
    let max = values.iter().copied().fold(0.0, f64::max).max(1.0) * 1.15;
    let height = 40 + 22 * n as u32;
    svg(height, |root| {
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(22)
            .y_label_area_size(150)
            .build_cartesian_2d(0.0..max, (0..n).into_segmented())
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = labels.iter().map(|l| label(l)).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    names.get(*i).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (*v, SegmentValue::Exact(i + 1)),
                    ],
                    colour.filled(),
                );
                bar.set_margin(3, 3, 0, 0);
                bar
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                Text::new(
                    format!("{v:.decimals$}"),
                    (*v, SegmentValue::CenterOf(i)),
                    ("sans-serif", 12).into_font(),
                )
            }))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// One line per series over `x_labels`, with a legend.
pub fn lines(x_labels: &[String], series: &[(String, Vec<f64>)], y_label: &str) -> String {
    let n = x_labels.len().max(2);
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    svg(320, |root| {
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(0..(n - 1), 0.0..max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(6)
            .x_label_formatter(&|i| x_labels.get(*i).map(|l| label(l)).unwrap_or_default())
            .y_desc(y_label)
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, (name, values)) in series.iter().enumerate() {
            let colour = Palette99::pick(k).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    values.iter().enumerate().map(|(i, v)| (i, *v)),
                    colour.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(label(name))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(2))
                });
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 11))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// The P(alive) grid: a cell per (repeat purchases, recency band), shaded by its mean.
pub fn grid(rows: &[String], columns: &[&str], cells: &[Vec<Option<f64>>]) -> String {
    let (nr, nc) = (rows.len().max(1), columns.len().max(1));
    svg(60 + 30 * nr as u32, |root| {
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(60)
            .build_cartesian_2d((0..nc).into_segmented(), (0..nr).into_segmented())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(nc)
            .y_labels(nr)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => {
                    columns.get(*i).map(|c| c.to_string()).unwrap_or_default()
                }
                _ => String::new(),
            })
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => rows
                    .get(*i)
                    .map(|r| format!("{r} repeat"))
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(|e| e.to_string())?;
        for (r, row) in cells.iter().enumerate() {
            for (c, value) in row.iter().enumerate() {
                let shade = value.map_or(RGBColor(240, 240, 240), |p| {
                    // From red (leaving) to green (alive).
                    RGBColor((220.0 * (1.0 - p)) as u8 + 20, (180.0 * p) as u8 + 40, 80)
                });
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (SegmentValue::Exact(c), SegmentValue::Exact(r)),
                            (SegmentValue::Exact(c + 1), SegmentValue::Exact(r + 1)),
                        ],
                        shade.filled(),
                    )))
                    .map_err(|e| e.to_string())?;
                if let Some(p) = value {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!("{p:.2}"),
                            (SegmentValue::CenterOf(c), SegmentValue::CenterOf(r)),
                            ("sans-serif", 12).into_font().color(&WHITE),
                        )))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    })
}

const TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{{ refresh }}">
<title>woostream · insight</title>
<link rel="icon" href="data:,">
<style>
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 16px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin: 0 0 6px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(580px, 1fr)); gap: 16px; }
section { border: 1px solid #ddd; border-radius: 6px; padding: 10px; }
figure { margin: 0; } table { border-collapse: collapse; font-size: 12px; margin-top: 6px; }
td, th { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.muted { color: #777; font-size: 12px; }
</style>
</head>
<body>
<h1>woostream insight</h1>
<p class="muted">{{ customers }} customers with an order · read from the topics at {{ generated }} · refreshes every {{ refresh }} s</p>
<div class="grid">

<section><h2>Segments</h2>
<figure id="segments" data-values="{{ segments_values }}">{{ segments_svg|safe }}</figure>
<table><tr><th>moved</th><th>to</th><th>customers</th></tr>
{% for m in moves %}<tr><td>{{ m.from }}</td><td>{{ m.to }}</td><td>{{ m.customers }}</td></tr>{% endfor %}
</table></section>

<section><h2>Segments over time (by stream week)</h2>
<figure id="segments-over-time" data-values="{{ history_values }}">{{ history_svg|safe }}</figure></section>

<section><h2>12-month CLV</h2>
<figure id="clv" data-values="{{ clv_values }}">{{ clv_svg|safe }}</figure></section>

<section><h2>P(alive) by repeat purchases and recency</h2>
<figure id="p-alive" data-values="{{ grid_values }}">{{ grid_svg|safe }}</figure>
<p class="muted">Mean P(alive) of the customers in each cell; grey: nobody.</p></section>

<section><h2>Top categories</h2>
<figure id="categories" data-values="{{ categories_values }}">{{ categories_svg|safe }}</figure></section>

<section><h2>Model</h2>
{% for m in models %}
<table id="model-{{ m.shop_id }}"><tr><th>{{ m.shop_id }}</th><th></th></tr>
<tr><td>customers (repeat)</td><td>{{ m.customers }} ({{ m.repeat_customers }})</td></tr>
<tr><td>BG/NBD {{ "fitted" if m.bgnbd_fitted else "prior" }}</td><td>r={{ "%.4f"|format(m.r) }} α={{ "%.2f"|format(m.alpha) }}d a={{ "%.4f"|format(m.a) }} b={{ "%.4f"|format(m.b) }}</td></tr>
<tr><td>Gamma-Gamma {{ "fitted" if m.gamma_gamma_fitted else "prior" }}</td><td>p={{ "%.3f"|format(m.p) }} q={{ "%.3f"|format(m.q) }} v={{ "%.2f"|format(m.v) }}</td></tr>
<tr><td>VIP from CLV · p95 order</td><td>{{ "%.2f"|format(m.vip_clv_threshold) }} · {{ "%.2f"|format(m.order_value_p95) }}</td></tr>
<tr><td>repurchase intervals learned</td><td>{{ m.repurchase_intervals|length }}</td></tr>
</table>
{% else %}<p class="muted">No model fitted yet: profiles are scored with the priors.</p>{% endfor %}
</section>

<section><h2>Backtest calibration</h2>
{% for b in backtests %}
<figure id="backtest-{{ b.shop }}" data-values="{{ b.values }}">{{ b.svg|safe }}</figure>
<p class="muted">{{ b.shop }}: cut-off {{ b.as_of }}, {{ b.horizon }} days; purchase days predicted {{ "%.1f"|format(b.predicted) }}, actual {{ b.actual }}; ranking AUC {{ "%.3f"|format(b.auc) }}</p>
{% else %}<p class="muted">No backtest yet: run <code>woostream backtest --as-of DATE --horizon DAYS</code>.</p>{% endfor %}
</section>

<section><h2>Live flow</h2>
<figure id="flow" data-values="{{ flow_values }}">{{ flow_svg|safe }}</figure>
<table><tr><th>topic</th><th>records</th><th>per second</th></tr>
{% for f in flow %}<tr><td>{{ f.topic }}</td><td>{{ f.records }}</td><td>{{ f.per_second }}</td></tr>{% endfor %}
</table></section>

<section><h2>Slack and CRM deliveries</h2>
<table id="deliveries"><tr><th>sink</th><th>outcome</th><th>deliveries</th></tr>
{% for d in deliveries %}<tr><td>{{ d.sink }}</td><td>{{ d.outcome }}</td><td>{{ d.deliveries }}</td></tr>{% else %}<tr><td colspan="3" class="muted">none yet</td></tr>{% endfor %}
</table>
{% if refusals %}<table><tr><th>refused by</th><th>destination</th><th>reason</th></tr>
{% for r in refusals %}<tr><td>{{ r.sink }}</td><td>{{ r.destination }}</td><td>{{ r.reason }}</td></tr>{% endfor %}</table>{% endif %}
<h2>Alerts</h2>
<table id="alerts"><tr><th>kind</th><th>alerts</th></tr>
{% for a in alerts %}<tr><td>{{ a.kind }}</td><td>{{ a.alerts }}</td></tr>{% endfor %}
</table></section>

</div>
</body>
</html>
"#;

/// The page for `summary`.
pub fn render(
    summary: &Summary,
    generated: &str,
    refresh_secs: u32,
) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("insight", TEMPLATE)?;
    let names: Vec<String> = summary
        .segments
        .iter()
        .map(|s| s.segment.to_string())
        .collect();
    let counts: Vec<f64> = summary
        .segments
        .iter()
        .map(|s| s.customers as f64)
        .collect();
    let weeks: Vec<String> = summary
        .segments_over_time
        .iter()
        .map(|w| w.week_start.clone())
        .collect();
    let history: Vec<(String, Vec<f64>)> = summary
        .segment_names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (
                name.to_string(),
                summary
                    .segments_over_time
                    .iter()
                    .map(|w| w.counts[i] as f64)
                    .collect::<Vec<f64>>(),
            )
        })
        .filter(|(_, v)| v.iter().any(|x| *x > 0.0))
        .collect();
    let clv_labels: Vec<String> = summary
        .clv_histogram
        .iter()
        .map(|b| b.label.clone())
        .collect();
    let clv_counts: Vec<f64> = summary
        .clv_histogram
        .iter()
        .map(|b| b.customers as f64)
        .collect();
    let rows: Vec<String> = summary
        .p_alive_grid
        .iter()
        .map(|r| r.frequency.clone())
        .collect();
    let cells: Vec<Vec<Option<f64>>> = summary
        .p_alive_grid
        .iter()
        .map(|r| r.cells.iter().map(|c| c.mean_p_alive).collect())
        .collect();
    let category_names: Vec<String> = summary
        .top_categories
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let category_revenue: Vec<f64> = summary.top_categories.iter().map(|c| c.revenue).collect();
    let flow_series: Vec<(String, Vec<f64>)> = summary
        .flow
        .iter()
        .filter(|f| f.history.iter().any(|v| *v > 0.0))
        .map(|f| (f.topic.clone(), f.history.clone()))
        .collect();
    let flow_x: Vec<String> = (0..flow_series.iter().map(|s| s.1.len()).max().unwrap_or(0))
        .map(|i| i.to_string())
        .collect();
    let backtests: Vec<_> = summary
        .backtests
        .iter()
        .map(|b| {
            let groups: Vec<String> = b.by_frequency.iter().map(|g| g.group.clone()).collect();
            let predicted: Vec<f64> = b.by_frequency.iter().map(|g| g.predicted).collect();
            let actual: Vec<f64> = b.by_frequency.iter().map(|g| g.actual).collect();
            context! {
                shop => b.shop_id,
                as_of => b.as_of.format("%Y-%m-%d").to_string(),
                horizon => b.horizon_days,
                predicted => b.predicted_purchases,
                actual => b.actual_purchases,
                auc => b.expected_purchases_auc,
                values => json!({"groups": groups, "predicted": predicted, "actual": actual}).to_string(),
                svg => lines(
                    &groups,
                    &[("predicted".into(), predicted.clone()), ("actual".into(), actual.clone())],
                    "purchase days per customer",
                ),
            }
        })
        .collect();
    env.get_template("insight")?.render(context! {
        refresh => refresh_secs,
        generated => generated,
        customers => summary.customers,
        segments_values => json!(summary.segments).to_string(),
        segments_svg => bars(&names, &counts, 0, RGBColor(66, 133, 180)),
        moves => summary.moves,
        history_values => json!({"weeks": weeks, "series": history}).to_string(),
        history_svg => lines(&weeks, &history, "customers"),
        clv_values => json!(summary.clv_histogram).to_string(),
        clv_svg => bars(&clv_labels, &clv_counts, 0, RGBColor(90, 160, 90)),
        grid_values => json!({"rows": rows, "columns": summary.recency_bands, "cells": cells}).to_string(),
        grid_svg => grid(&rows, &summary.recency_bands, &cells),
        categories_values => json!(summary.top_categories).to_string(),
        categories_svg => bars(&category_names, &category_revenue, 2, RGBColor(200, 130, 60)),
        models => summary.models,
        backtests => backtests,
        flow_values => json!(summary.flow).to_string(),
        flow_svg => lines(&flow_x, &flow_series, "records per second"),
        flow => summary.flow,
        deliveries => summary.deliveries,
        refusals => summary.refusals,
        alerts => summary.alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::View;
    use woostream_core::contract::enriched::{ChurnRisk, CustomerProfile, Segment, TasteEntry};
    use woostream_core::Money;

    fn profile(customer: &str, segment: Segment, version: i64, category: &str) -> CustomerProfile {
        let now = chrono::Utc::now();
        CustomerProfile {
            shop_id: "<main>".into(),
            customer: customer.into(),
            customer_id: None,
            version,
            model_version: 0,
            as_of: now,
            source_partition: 0,
            source_offset: 0,
            caused_by_event_id: String::new(),
            correlation_id: String::new(),
            currency: None,
            orders_count: 1,
            transactions: 2,
            revenue: Money::from_micros(10_000_000),
            refunded: Money::ZERO,
            average_order_value: Money::ZERO,
            first_order_at: Some(now - chrono::Duration::days(40)),
            last_order_at: Some(now - chrono::Duration::days(40)),
            recency_score: 1,
            frequency_score: 1,
            monetary_score: 1,
            segment,
            p_alive: 0.5,
            expected_purchases_30d: 0.0,
            expected_purchases_90d: 0.0,
            expected_purchases_365d: 0.0,
            expected_order_value: Money::ZERO,
            clv_12_months: Money::from_micros(30_000_000),
            churn_risk: ChurnRisk::Low,
            vip: false,
            orders: Vec::new(),
            top_categories: vec![TasteEntry {
                id: 1,
                name: Some(category.into()),
                revenue: Money::from_micros(10_000_000),
                orders: 1,
                quantity: 1,
            }],
            top_products: Vec::new(),
            frequent_products: Vec::new(),
            last_products: Vec::new(),
            mean_interval_days: None,
            typical_interval_days: None,
            preferred_payment_method: None,
            discount_share: 0.0,
            expected_next_purchase_at: None,
            replenishment: Vec::new(),
        }
    }

    #[test]
    fn the_page_draws_the_views_numbers_and_escapes_the_shops_words() {
        let mut view = View::default();
        view.on_profile(
            "main",
            "1",
            Some(&profile("1", Segment::NewCustomers, 1, "Tea")),
        );
        view.on_profile(
            "main",
            "1",
            Some(&profile("1", Segment::Champions, 2, "Tea")),
        );
        view.on_profile(
            "main",
            "2",
            Some(&profile(
                "2",
                Segment::Champions,
                1,
                "<script>alert(1)</script>",
            )),
        );
        // An older version arriving late changes nothing.
        view.on_profile("main", "2", Some(&profile("2", Segment::Lost, 1, "x")));
        let s = view.summary();
        assert_eq!(s.customers, 2);
        let champions = s
            .segments
            .iter()
            .find(|f| f.segment == "Champions")
            .unwrap();
        assert_eq!(champions.customers, 2);
        assert_eq!(s.moves[0].from, "New Customers");
        assert_eq!(
            s.clv_histogram
                .iter()
                .find(|b| b.label == "25-50")
                .unwrap()
                .customers,
            2
        );
        let cell = &s.p_alive_grid[1].cells[1];
        assert_eq!((cell.customers, cell.mean_p_alive), (2, Some(0.5)));
        let html = render(&s, "now", 10).unwrap();
        assert!(!html.contains("<script>"), "the shop's words are escaped");
        assert!(html.contains("<svg"));
        assert_eq!(html.matches("<figure").count(), 6);
        // The numbers drawn are in the page: the value written at the end of the bar.
        assert!(
            html.contains(">\n2\n</text>") || html.contains(">2</text>"),
            "{}",
            &html[..2000]
        );
        // Erased: gone from the counts.
        view.on_profile("main", "2", None);
        assert_eq!(view.summary().customers, 1);
    }
}
