//! Pure: the configuration reference, read from the configuration's JSON Schema (which schemars
//! derives from the types and their doc comments), so that the documentation of every key, its
//! type and its default cannot drift from what the binary accepts.
//!
//! The same walk lists every key's path, which the tests hold the example configuration to.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// The configuration's JSON Schema, as `woostream config schema` prints it.
pub fn configuration_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(woostream_core::config::Config))
        .expect("a JSON Schema is JSON")
}

/// One TOML table of the configuration: `[kafka]`, `[[shops]]`, `[topics.<topic>]`.
#[derive(Debug)]
pub struct Table {
    /// As written in a file: `[kafka.security]`, `[[slack.rules]]`.
    pub header: String,
    /// The dotted path, `*` where the file chooses the name (a topic, a template).
    pub path: String,
    pub description: String,
    pub keys: Vec<Key>,
}

#[derive(Debug)]
pub struct Key {
    pub name: String,
    pub kind: String,
    /// The default as TOML would write it; `None` when the key is required.
    pub default: Option<String>,
    pub description: String,
}

/// What a schema node is, after references and `null` alternatives are looked through.
enum Shape<'a> {
    Table(&'a Value),
    Map(&'a Value),
    ArrayOfTables(&'a Value),
    Leaf(String),
}

struct Walker<'a> {
    defs: &'a serde_json::Map<String, Value>,
    tables: Vec<Table>,
}

/// Every table of the configuration, in file order (the root's keys first).
pub fn tables(schema: &Value) -> Vec<Table> {
    let empty = serde_json::Map::new();
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut walker = Walker {
        defs,
        tables: Vec::new(),
    };
    walker.table(schema, "", "", false, "");
    walker.tables.retain(|t| !t.keys.is_empty());
    // Sections in the order a file usually has them (the schema's own order is alphabetical);
    // the sort is stable, so a section's tables stay below it.
    let rank = |t: &Table| {
        let section = t.path.split('.').next().unwrap_or("");
        SECTION_ORDER
            .iter()
            .position(|s| *s == section)
            .unwrap_or(SECTION_ORDER.len())
    };
    walker.tables.sort_by_key(rank);
    walker.tables
}

/// The configuration's sections as `Config` declares them.
const SECTION_ORDER: [&str; 15] = [
    "kafka",
    "topics",
    "schema_registry",
    "producer",
    "shops",
    "enricher",
    "slack",
    "crm",
    "ops",
    "insight",
    "log",
    "traces",
    "privacy",
    "retention",
    "http",
];

impl<'a> Walker<'a> {
    fn resolve(&self, node: &'a Value) -> &'a Value {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            if let Some(def) = r.strip_prefix("#/$defs/").and_then(|n| self.defs.get(n)) {
                return self.resolve(def);
            }
        }
        // `Option<T>`: anyOf [T, null].
        if let Some(alternatives) = node.get("anyOf").and_then(Value::as_array) {
            let non_null: Vec<&Value> = alternatives
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            if non_null.len() == 1 {
                return self.resolve(non_null[0]);
            }
        }
        node
    }

    fn is_secret(&self, node: &Value) -> bool {
        let refers = |n: &Value| n.get("$ref").and_then(Value::as_str) == Some("#/$defs/Secret");
        refers(node)
            || node
                .get("anyOf")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(refers))
    }

    fn shape(&self, node: &'a Value) -> Shape<'a> {
        if self.is_secret(node) {
            return Shape::Leaf("secret".into());
        }
        let node = self.resolve(node);
        if node.get("properties").is_some() {
            return Shape::Table(node);
        }
        if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
            if let Shape::Table(t) = self.shape(values) {
                return Shape::Map(t);
            }
            return Shape::Leaf(format!("map of {}", self.leaf_kind(values)));
        }
        if let Some(items) = node.get("items") {
            if let Shape::Table(t) = self.shape(items) {
                return Shape::ArrayOfTables(t);
            }
            return Shape::Leaf(format!("list of {}", self.leaf_kind(items)));
        }
        Shape::Leaf(self.leaf_kind(node))
    }

    fn leaf_kind(&self, node: &Value) -> String {
        if self.is_secret(node) {
            return "secret".into();
        }
        let node = self.resolve(node);
        let mut values: Vec<String> = Vec::new();
        if let Some(e) = node.get("enum").and_then(Value::as_array) {
            values.extend(e.iter().filter_map(Value::as_str).map(|v| format!("`{v}`")));
        }
        for alternative in node
            .get("oneOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(c) = alternative.get("const").and_then(Value::as_str) {
                values.push(format!("`{c}`"));
            }
            for v in alternative
                .get("enum")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                values.extend(v.as_str().map(|v| format!("`{v}`")));
            }
        }
        if !values.is_empty() {
            return format!("one of {}", values.join(", "));
        }
        match node.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("any")
                .to_string(),
            _ => "any".into(),
        }
    }

    /// Describes the table `node` at `path` and every table below it.
    fn table(&mut self, node: &'a Value, path: &str, header: &str, array: bool, description: &str) {
        let node = self.resolve(node);
        let Some(properties) = node.get("properties").and_then(Value::as_object) else {
            return;
        };
        let required: Vec<&str> = node
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let index = self.tables.len();
        self.tables.push(Table {
            header: match (header.is_empty(), array) {
                (true, _) => String::new(),
                (false, true) => format!("[[{header}]]"),
                (false, false) => format!("[{header}]"),
            },
            path: path.to_string(),
            description: first_paragraph(if description.is_empty() {
                text(node, "description")
            } else {
                description
            }),
            keys: Vec::new(),
        });
        // Properties of the same table type side by side (the topics) are one table `<name>`.
        let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
        for child in properties.values() {
            if let Some(r) = child.get("$ref").and_then(Value::as_str) {
                *by_type.entry(r.to_string()).or_default() += 1;
            }
        }
        let mut below: Vec<(String, &'a Value, String, bool, String)> = Vec::new();
        let mut repeated_done: Vec<String> = Vec::new();
        for (name, child) in properties {
            let join = |p: &str, n: &str| {
                if p.is_empty() {
                    n.to_string()
                } else {
                    format!("{p}.{n}")
                }
            };
            let child_path = join(path, name);
            let child_header = join(header, name);
            let doc = text(child, "description");
            let default = child.get("default");
            let key = |kind: String| Key {
                name: name.clone(),
                kind,
                default: if required.contains(&name.as_str()) {
                    None
                } else {
                    Some(default.map(toml_value).unwrap_or_else(|| "none".into()))
                },
                description: doc.to_string(),
            };
            match self.shape(child) {
                Shape::Leaf(kind) => self.tables[index].keys.push(key(kind)),
                Shape::Table(t) => {
                    let repeated = child
                        .get("$ref")
                        .and_then(Value::as_str)
                        .filter(|r| by_type.get(*r).copied().unwrap_or(0) > 1);
                    if let Some(r) = repeated {
                        let mut k = key(format!("table (`[{child_header}]`)"));
                        k.default = default
                            .and_then(|d| d.get("name"))
                            .map(toml_value)
                            .or(k.default);
                        self.tables[index].keys.push(k);
                        if !repeated_done.contains(&r.to_string()) {
                            repeated_done.push(r.to_string());
                            let wildcard = join(header, "<name>");
                            below.push((join(path, "*"), t, wildcard, false, String::new()));
                        }
                    } else {
                        below.push((child_path, t, child_header, false, doc.to_string()));
                    }
                }
                Shape::Map(t) => {
                    below.push((
                        join(&child_path, "*"),
                        t,
                        join(&child_header, "<name>"),
                        false,
                        doc.to_string(),
                    ));
                }
                Shape::ArrayOfTables(t) => {
                    below.push((child_path, t, child_header, true, doc.to_string()));
                }
            }
        }
        for (p, t, h, array, doc) in below {
            self.table(t, &p, &h, array, &doc);
        }
    }
}

fn text<'v>(node: &'v Value, field: &str) -> &'v str {
    node.get(field).and_then(Value::as_str).unwrap_or("")
}

fn first_paragraph(s: &str) -> String {
    plain(s.split("\n\n").next().unwrap_or("")).replace('\n', " ")
}

/// Rustdoc's links to code (`` [`NAME`] ``) as plain code.
fn plain(s: &str) -> String {
    s.replace("[`", "`").replace("`]", "`")
}

/// A JSON default as TOML writes it (short forms for what is empty).
fn toml_value(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        Value::Object(_) => "see below".into(),
        other => other.to_string(),
    }
}

/// The configuration reference as Markdown.
pub fn configuration_markdown(schema: &Value) -> String {
    let mut out = String::from(
        "<!-- Generated by `woostream config reference` (make docs); do not edit by hand. -->\n\
         # Configuration reference\n\n\
         Every key woostream reads, its type, its default and what it does. A file (TOML or YAML) \
         sets any of them; `WOOSTREAM__SECTION__KEY` environment variables override the file \
         (`WOOSTREAM__KAFKA__BOOTSTRAP_SERVERS=broker:9092`). A key not listed here is refused at \
         start-up with the file and the line. A *secret* is the value itself, `{ env = \"VARIABLE\" }` \
         or `{ file = \"/path\" }`. `woostream check-config --config FILE` prints the effective \
         configuration with every secret hidden; `woostream config schema` prints the JSON Schema \
         this page is made from.\n",
    );
    for table in tables(schema) {
        let title = if table.header.is_empty() {
            "Top level".to_string()
        } else {
            format!("`{}`", table.header)
        };
        let _ = write!(out, "\n## {title}\n\n");
        if !table.description.is_empty() {
            let _ = write!(out, "{}\n\n", table.description);
        }
        out.push_str("| key | type | default | description |\n|---|---|---|---|\n");
        for key in &table.keys {
            let default = match &key.default {
                None => "required".to_string(),
                Some(d) => format!("`{}`", d.replace('|', "\\|")),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                key.name,
                key.kind,
                default,
                plain(&key.description)
                    .replace('\n', " ")
                    .replace('|', "\\|")
            );
        }
    }
    out
}

/// Every key's dotted path (`kafka.security.ca_file`, `shops.rest.url`, `topics.*.name`).
pub fn key_paths(schema: &Value) -> Vec<String> {
    tables(schema)
        .iter()
        .flat_map(|t| {
            t.keys.iter().map(move |k| {
                if t.path.is_empty() {
                    k.name.clone()
                } else {
                    format!("{}.{}", t.path, k.name)
                }
            })
        })
        .collect()
}

/// The key paths an example file names, set or commented out (`# key = …`, `# [section]`).
pub fn paths_named_in_example(toml_text: &str) -> Vec<String> {
    let mut section = String::new();
    let mut named = Vec::new();
    for line in toml_text.lines() {
        let line = line.trim();
        let line = line.strip_prefix('#').map(str::trim_start).unwrap_or(line);
        if let Some(rest) = line.strip_prefix('[') {
            let rest = rest.trim_start_matches('[');
            if let Some(end) = rest.find(']') {
                let name = rest[..end].trim();
                if name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                {
                    section = name.to_string();
                    named.push(section.clone());
                }
            }
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            continue;
        }
        named.push(if section.is_empty() {
            key.to_string()
        } else {
            format!("{section}.{key}")
        });
    }
    named
}

/// The schema's key paths no path of the example names (`*` matches any one name).
pub fn missing_from_example(schema: &Value, toml_text: &str) -> Vec<String> {
    let named = paths_named_in_example(toml_text);
    key_paths(schema)
        .into_iter()
        .filter(|path| {
            let want: Vec<&str> = path.split('.').collect();
            !named.iter().any(|n| {
                let got: Vec<&str> = n.split('.').collect();
                got.len() == want.len() && want.iter().zip(&got).all(|(w, g)| *w == "*" || w == g)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_and_nested_table_is_described() {
        let tables = tables(&configuration_schema());
        let headers: Vec<&str> = tables.iter().map(|t| t.header.as_str()).collect();
        for want in [
            "[kafka]",
            "[kafka.security]",
            "[topics]",
            "[topics.<name>]",
            "[[shops]]",
            "[shops.rest]",
            "[slack]",
            "[[slack.rules]]",
            "[slack.templates.<name>]",
            "[crm.inbound]",
            "[enricher]",
        ] {
            assert!(headers.contains(&want), "{want} missing from {headers:?}");
        }
        let kafka = tables.iter().find(|t| t.header == "[kafka]").unwrap();
        let compression = kafka.keys.iter().find(|k| k.name == "compression").unwrap();
        assert_eq!(compression.default.as_deref(), Some("\"lz4\""));
        let shops = tables.iter().find(|t| t.header == "[[shops]]").unwrap();
        let secret = shops.keys.iter().find(|k| k.name == "secret").unwrap();
        assert_eq!(secret.kind, "secret");
        let id = shops.keys.iter().find(|k| k.name == "id").unwrap();
        assert_eq!(id.default, None, "a shop's id is required");
        let enricher = tables.iter().find(|t| t.header == "[enricher]").unwrap();
        let transactions = enricher
            .keys
            .iter()
            .find(|k| k.name == "transactions")
            .unwrap();
        assert!(
            transactions.kind.contains("`auto`"),
            "{}",
            transactions.kind
        );
    }

    /// A key without a doc comment would be a row of the reference that says nothing.
    #[test]
    fn every_key_is_described() {
        let undescribed: Vec<String> = tables(&configuration_schema())
            .iter()
            .flat_map(|t| {
                t.keys
                    .iter()
                    .filter(|k| k.description.trim().is_empty())
                    .map(move |k| format!("{} {}", t.header, k.name))
            })
            .collect();
        assert!(
            undescribed.is_empty(),
            "keys without a doc comment: {undescribed:?}"
        );
    }

    #[test]
    fn every_section_has_its_place_in_the_order() {
        let schema = configuration_schema();
        let sections: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        for s in &sections {
            assert!(
                SECTION_ORDER.contains(&s.as_str()),
                "{s} missing from SECTION_ORDER"
            );
        }
        assert_eq!(sections.len(), SECTION_ORDER.len());
    }

    #[test]
    fn an_example_missing_a_key_is_caught() {
        let schema = configuration_schema();
        let example = "[kafka]\n# compression = \"lz4\"\n[[shops]]\nid = \"x\"\n# [shops.rest]\n# url = \"\"\n";
        let missing = missing_from_example(&schema, example);
        assert!(!missing.contains(&"kafka.compression".to_string()));
        assert!(!missing.contains(&"shops.id".to_string()));
        assert!(!missing.contains(&"shops.rest.url".to_string()));
        assert!(
            missing.contains(&"kafka.linger_ms".to_string()),
            "{missing:?}"
        );
        assert!(
            missing.contains(&"topics.*.name".to_string()),
            "{missing:?}"
        );
    }

    /// The example configuration names every key woostream reads (set, or commented out with
    /// its default), so that reading it is reading the whole surface.
    #[test]
    fn the_example_configuration_names_every_key() {
        let example = include_str!("../../../deploy/woostream.example.toml");
        let missing = missing_from_example(&configuration_schema(), example);
        assert!(
            missing.is_empty(),
            "deploy/woostream.example.toml lacks {} keys (add each, commented out with its default; \
             docs/reference/configuration.md lists them): {missing:#?}",
            missing.len()
        );
    }
}
