//! `WOOSTREAM__A__B=value` environment overrides, applied to the parsed configuration.

use super::{Config, ConfigError, ENV_PREFIX};

/// Applies `WOOSTREAM__A__B=value` overrides to the parsed configuration.
pub(super) fn apply_env_overrides(
    config: Config,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    if overrides.is_empty() {
        return Ok(config);
    }
    overrides.sort();
    let mut tree = serde_json::to_value(&config).expect("config serialises");
    for (var, raw) in &overrides {
        let env_err = |message: String| ConfigError {
            origin: "environment".into(),
            line: None,
            column: None,
            key: Some(var.clone()),
            message,
        };
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let mut node = &mut tree;
        for (i, seg) in path.iter().enumerate() {
            let last = i == path.len() - 1;
            node = match node {
                serde_json::Value::Object(map) => {
                    let entry = map.entry(seg.clone()).or_insert(serde_json::Value::Null);
                    if !last && entry.is_null() {
                        *entry = if path[i + 1].parse::<usize>().is_ok() {
                            serde_json::Value::Array(vec![])
                        } else {
                            serde_json::Value::Object(Default::default())
                        };
                    }
                    entry
                }
                serde_json::Value::Array(items) => {
                    let idx: usize = seg
                        .parse()
                        .map_err(|_| env_err(format!("expected a list index, found {seg:?}")))?;
                    if idx > items.len() {
                        return Err(env_err(format!(
                            "list index {idx} skips entries (the list has {})",
                            items.len()
                        )));
                    }
                    if idx == items.len() {
                        items.push(serde_json::Value::Object(Default::default()));
                    }
                    &mut items[idx]
                }
                _ => return Err(env_err(format!("{seg:?} is not a table"))),
            };
        }
        *node = match node {
            serde_json::Value::Number(_) => serde_json::Value::Number(
                raw.trim()
                    .parse()
                    .map_err(|_| env_err(format!("expected a number, found {raw:?}")))?,
            ),
            serde_json::Value::Bool(_) => serde_json::Value::Bool(
                raw.trim()
                    .parse()
                    .map_err(|_| env_err(format!("expected true or false, found {raw:?}")))?,
            ),
            serde_json::Value::String(_) => serde_json::Value::String(raw.clone()),
            // Unset optional values: numbers and booleans as such, anything else as text.
            _ => serde_json::from_str::<serde_json::Value>(raw)
                .ok()
                .filter(|v| v.is_number() || v.is_boolean())
                .unwrap_or_else(|| serde_json::Value::String(raw.clone())),
        };
    }
    serde_json::from_value(tree).map_err(|e| ConfigError {
        origin: "environment".into(),
        line: None,
        column: None,
        key: Some(
            overrides
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        message: e.to_string(),
    })
}
