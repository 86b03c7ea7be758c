//! Keeping personal data out of logs, dead-letter reasons and audit records: the two ways
//! messages from outside are cleaned before woostream repeats them.

/// Replaces every quoted value in a parser's message with `"…"`: JSON parsers quote the
/// offending value, which may be a name, an email or an address.
pub fn hide_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quote = false;
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        match c {
            // Parsers print values with Rust's escapes: `\"` inside a value does not end it.
            '\\' if in_quote => {
                chars.next();
            }
            '"' => {
                if !in_quote {
                    out.push_str("\"…\"");
                }
                in_quote = !in_quote;
            }
            _ if !in_quote => out.push(c),
            _ => {}
        }
    }
    out
}

/// Replaces every word that looks like an email address with `<email>`: a CRM repeats the
/// values it refuses in its messages.
pub fn hide_emails(message: &str) -> String {
    message
        .split_inclusive(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .map(|w| {
            let core = w.trim_end_matches(|c: char| c.is_whitespace() || c == '"' || c == ',');
            if core.contains('@') {
                format!("<email>{}", &w[core.len()..])
            } else {
                w.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{hide_emails, hide_quoted_values};

    #[test]
    fn quoted_values_are_hidden() {
        assert_eq!(
            hide_quoted_values(r#"invalid type: string "Jan Kowalski", expected u64 at line 1"#),
            r#"invalid type: string "…", expected u64 at line 1"#
        );
        assert_eq!(hide_quoted_values("no quotes"), "no quotes");
        // A value with escaped quotes is hidden whole, not toggled at each of them.
        let value = "Jan \"the boss\" Kowalski <jan@example.com>";
        let message = format!("invalid type: string {value:?}, expected u64");
        assert!(message.contains("\\\""), "{message}");
        assert_eq!(
            hide_quoted_values(&message),
            r#"invalid type: string "…", expected u64"#
        );
        assert_eq!(
            hide_quoted_values(r#"unterminated "a@b.pl"#),
            r#"unterminated "…""#
        );
    }

    #[test]
    fn emails_are_hidden() {
        assert_eq!(
            hide_emails(r#"Email address jan@kowalski is invalid, "a@b.pl","#),
            r#"Email address <email> is invalid, "<email>","#
        );
        assert_eq!(hide_emails("nothing personal"), "nothing personal");
    }
}
