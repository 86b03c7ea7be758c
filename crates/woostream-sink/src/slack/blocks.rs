//! Block Kit within Slack's limits: 50 blocks, 3,000 characters per section text, 10 fields
//! of at most 2,000, a 150-character plain-text header. Long content is cut with "…and N more"
//! so that Slack never rejects a message for its size.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::template::Rendered;

pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3_000;
pub const MAX_FIELDS: usize = 10;
pub const MAX_FIELD_TEXT: usize = 2_000;
pub const MAX_HEADER: usize = 150;
pub const MAX_CONTEXT_TEXT: usize = 2_000;
/// The notification text; Slack truncates beyond 40,000, people stop reading far earlier.
pub const MAX_FALLBACK: usize = 3_000;

/// A message as `chat.postMessage` and incoming webhooks take it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub text: String,
    pub blocks: Vec<Value>,
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Cuts `s` to at most `max` characters, ending with "…" when cut.
pub fn cut(s: &str, max: usize) -> String {
    if chars(s) <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    // Never leave half an escape sequence (`&amp;`) or link (`<…|…>`) behind.
    if let Some(amp) = out.rfind('&') {
        if !out[amp..].contains(';') {
            out.truncate(amp);
        }
    }
    if let Some(open) = out.rfind('<') {
        if !out[open..].contains('>') {
            out.truncate(open);
        }
    }
    out.push('…');
    out
}

/// Keeps whole lines of `text` within `max` characters; the lines left out are counted in a
/// last line "…and N more".
pub fn cut_lines(text: &str, max: usize) -> String {
    if chars(text) <= max {
        return text.to_string();
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut kept: Vec<String> = Vec::new();
    let mut used = 0;
    for (i, line) in lines.iter().enumerate() {
        let rest = lines.len() - i - 1;
        let note = format!("…and {} more", rest + 1);
        let need = chars(line) + 1;
        // Room for this line and, if lines remain after it, for the note.
        let reserve = if rest > 0 { chars(&note) + 1 } else { 0 };
        if used + need + reserve > max {
            if kept.is_empty() {
                // One enormous line: cut it instead of dropping everything.
                let more = format!("…and {} more", lines.len() - 1);
                let room = max.saturating_sub(if lines.len() > 1 { chars(&more) + 1 } else { 0 });
                kept.push(cut(line, room));
                if lines.len() > 1 {
                    kept.push(more);
                }
            } else {
                kept.push(format!("…and {} more", lines.len() - i));
            }
            return kept.join("\n");
        }
        used += need;
        kept.push((*line).to_string());
    }
    kept.join("\n")
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut_lines(text, MAX_SECTION_TEXT)}})
}

/// The Block Kit message of a rendered template.
pub fn build(r: &Rendered) -> Message {
    let mut blocks = Vec::new();
    if let Some(h) = &r.header {
        // Header text is plain_text: one line.
        let one_line = h.lines().collect::<Vec<_>>().join(" ");
        blocks.push(json!({"type": "header", "text": {"type": "plain_text", "text": cut(&one_line, MAX_HEADER), "emoji": true}}));
    }
    let mut fields: Vec<Value> = r
        .fields
        .iter()
        .take(if r.fields.len() > MAX_FIELDS {
            MAX_FIELDS - 1
        } else {
            MAX_FIELDS
        })
        .map(|f| json!({"type": "mrkdwn", "text": cut(f, MAX_FIELD_TEXT)}))
        .collect();
    if r.fields.len() > MAX_FIELDS {
        fields.push(json!({"type": "mrkdwn", "text": format!("…and {} more", r.fields.len() - (MAX_FIELDS - 1))}));
    }
    if !r.text.is_empty() || !fields.is_empty() {
        let mut s = if r.text.is_empty() {
            json!({"type": "section"})
        } else {
            section(&r.text)
        };
        if !fields.is_empty() {
            s["fields"] = Value::Array(fields);
        }
        blocks.push(s);
    }
    if let Some(c) = &r.context {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(c, MAX_CONTEXT_TEXT)}]}));
    }
    Message {
        text: cut(&r.fallback, MAX_FALLBACK),
        blocks,
    }
}

/// Appends sections holding `lines`, each section within the text limit, the message within
/// the block limit; what does not fit is counted in a last "…and N more".
pub fn push_line_sections(blocks: &mut Vec<Value>, lines: &[String]) {
    let mut current = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = cut(&lines[i], MAX_SECTION_TEXT - 40);
        if chars(&current) + chars(&line) + 1 > MAX_SECTION_TEXT - 40 {
            if blocks.len() + 2 >= MAX_BLOCKS {
                current.push_str(&format!("…and {} more", lines.len() - i));
                break;
            }
            blocks.push(section(&current));
            current.clear();
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
        i += 1;
    }
    if !current.is_empty() {
        blocks.push(section(&current));
    }
}

/// The limits a message breaks, if any (what Slack would answer `invalid_blocks` to).
pub fn violations(m: &Message) -> Vec<String> {
    let mut out = Vec::new();
    if m.blocks.len() > MAX_BLOCKS {
        out.push(format!("{} blocks", m.blocks.len()));
    }
    for b in &m.blocks {
        let text = b["text"]["text"].as_str().unwrap_or_default();
        match b["type"].as_str() {
            Some("header") if chars(text) > MAX_HEADER => out.push("header too long".into()),
            Some("section") => {
                if chars(text) > MAX_SECTION_TEXT {
                    out.push("section text too long".into());
                }
                let fields = b["fields"].as_array().map_or(0, Vec::len);
                if fields > MAX_FIELDS {
                    out.push(format!("{fields} fields"));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_cut_with_a_count_of_what_was_left_out() {
        let lines: Vec<String> = (0..500).map(|i| format!("• line number {i:04}")).collect();
        let text = lines.join("\n");
        let out = cut_lines(&text, MAX_SECTION_TEXT);
        assert!(out.chars().count() <= MAX_SECTION_TEXT);
        let kept = out.lines().count() - 1;
        let last = out.lines().last().unwrap();
        assert_eq!(last, format!("…and {} more", 500 - kept));
        assert!(out.starts_with("• line number 0000\n"));
    }

    #[test]
    fn one_huge_line_is_cut_not_dropped() {
        let out = cut_lines(&"x".repeat(10_000), 3_000);
        assert_eq!(out.chars().count(), 3_000);
        assert!(out.ends_with('…'));
    }

    #[test]
    fn cuts_never_split_an_escape_or_a_link() {
        let s = format!("{}&amp; tail", "a".repeat(146));
        let out = cut(&s, 150);
        assert!(!out.contains('&'), "{out}");
        let s = format!("{}<https://x.example/very/long|label>", "a".repeat(140));
        assert!(!cut(&s, 150).contains('<'));
    }

    #[test]
    fn every_limit_holds_for_oversized_content() {
        let r = Rendered {
            header: Some("H".repeat(400)),
            text: (0..2_000).map(|i| format!("item {i}\n")).collect(),
            fields: (0..25)
                .map(|i| format!("field {i} {}", "f".repeat(3_000)))
                .collect(),
            context: Some("c".repeat(5_000)),
            fallback: "t".repeat(50_000),
        };
        let m = build(&r);
        assert!(violations(&m).is_empty(), "{:?}", violations(&m));
        let fields = m.blocks[1]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), MAX_FIELDS);
        assert_eq!(fields[9]["text"], "…and 16 more");
        assert!(m.text.chars().count() <= MAX_FALLBACK);
        let mut blocks = Vec::new();
        let many: Vec<String> = (0..20_000).map(|i| format!("#{i:06}")).collect();
        push_line_sections(&mut blocks, &many);
        let m = Message {
            text: String::new(),
            blocks,
        };
        assert!(violations(&m).is_empty());
        assert!(m.blocks.len() < MAX_BLOCKS);
        let last = m.blocks.last().unwrap()["text"]["text"].as_str().unwrap();
        assert!(last.contains("…and "), "the overflow is counted");
    }
}
