//! Where a dotted key such as `shops[1].secret` is in the configuration's text, so that a
//! mistake is reported with its line.

use super::Format;

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Finds the line of a dotted key such as `shops[1].secret` in the source text.
pub(super) fn locate_key(format: Format, text: &str, key: &str) -> Option<usize> {
    let segments: Vec<(&str, Option<usize>)> = key
        .split('.')
        .map(|s| match s.split_once('[') {
            Some((name, idx)) => (name, idx.trim_end_matches(']').parse().ok()),
            None => (s, None),
        })
        .collect();
    match format {
        Format::Toml => {
            let doc = text.parse::<toml_edit::ImDocument<String>>().ok()?;
            let mut table: &dyn toml_edit::TableLike = doc.as_table();
            let mut line = None;
            for (name, idx) in &segments {
                // A missing key (e.g. a required secret) is reported at its table.
                let Some((k, v)) = table.get_key_value(name) else {
                    break;
                };
                line = k.span().map(|s| line_col(text, s.start).0).or(line);
                let next: Option<&dyn toml_edit::TableLike> = match (v, idx) {
                    (toml_edit::Item::ArrayOfTables(a), Some(i)) => {
                        let t = a.get(*i)?;
                        line = t.span().map(|s| line_col(text, s.start).0).or(line);
                        Some(t)
                    }
                    (toml_edit::Item::Table(t), None) => Some(t),
                    (toml_edit::Item::Value(toml_edit::Value::InlineTable(t)), None) => Some(t),
                    _ => None,
                };
                match next {
                    Some(t) => table = t,
                    None => break,
                }
            }
            line
        }
        Format::Yaml => {
            // YAML has no span API in serde_norway: walk the keys in order through the text.
            let mut from = 0;
            let lines: Vec<&str> = text.lines().collect();
            let mut found = None;
            for (name, idx) in &segments {
                let Some(pos) = lines[from..].iter().position(|l| {
                    let t = l.trim_start().trim_start_matches("- ");
                    t.starts_with(&format!("{name}:"))
                }) else {
                    break;
                };
                from += pos;
                found = Some(from + 1);
                if let Some(i) = idx {
                    let Some(entry) = lines[from..]
                        .iter()
                        .enumerate()
                        .filter(|(_, l)| l.trim_start().starts_with("- "))
                        .nth(*i)
                        .map(|(n, _)| n)
                    else {
                        break;
                    };
                    from += entry;
                    found = Some(from + 1);
                }
            }
            found
        }
    }
}
