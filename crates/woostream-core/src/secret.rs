//! A credential in the configuration: written in the file, or named by an environment variable
//! or a file (a Kubernetes Secret mounted as a volume, a Docker secret):
//!
//! ```toml
//! token = "xoxb-…"                          # in the file
//! token = { env = "SLACK_BOT_TOKEN" }       # from the environment
//! token = { file = "/run/secrets/slack" }   # from a file (a trailing newline is dropped)
//! ```
//!
//! Its `Debug` never shows a value, and [`Secret::redacted`] is what `check-config` prints.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What `check-config` and `Debug` print in place of a value.
pub const REDACTED: &str = "<redacted>";

#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    Env(String),
    File(PathBuf),
}

impl Secret {
    /// The value, read from where the configuration says; an empty one is an error (a secret
    /// that is empty signs and opens everything).
    pub fn resolve(&self) -> Result<String, String> {
        let value = match self {
            Secret::Inline(v) => v.clone(),
            Secret::Env(var) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
            }
            Secret::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            return Err(match self {
                Secret::Inline(_) => "the secret is empty".into(),
                Secret::Env(var) => format!("environment variable {var} is empty"),
                Secret::File(path) => format!("{} is empty", path.display()),
            });
        }
        Ok(value)
    }

    /// The same reference with a value written in the file hidden; where it comes from
    /// (a variable's or a file's name) is not secret and stays.
    pub fn redacted(&self) -> Secret {
        match self {
            Secret::Inline(_) => Secret::Inline(REDACTED.into()),
            other => other.clone(),
        }
    }
}

/// The secret from `value`, or else the environment variable the older `*_env` key names.
pub fn resolve_secret(value: &Option<Secret>, env: &Option<String>) -> Option<String> {
    match (value, env) {
        (Some(s), _) => s.resolve().ok(),
        (None, Some(var)) => Secret::Env(var.clone()).resolve().ok(),
        (None, None) => None,
    }
}

/// Checks an optional secret at start-up: it must be readable, not empty and not a placeholder
/// copied from an example. The error names what to fix.
pub fn check_secret(value: &Option<Secret>, env: &Option<String>) -> Result<(), String> {
    let resolved = match (value, env) {
        (Some(_), Some(_)) => return Err("set the secret or its *_env key, not both".into()),
        (Some(s), None) => s.resolve()?,
        (None, Some(var)) => Secret::Env(var.clone()).resolve()?,
        (None, None) => return Ok(()),
    };
    if is_placeholder(&resolved) {
        return Err(format!(
            "{:?} is a placeholder, not a secret: put the real value here",
            resolved.trim()
        ));
    }
    Ok(())
}

/// What every role checks when it loads the configuration: a secret written in the file must be
/// a real one; one read from a variable or a file only if it can be read here (a role's pod
/// holds only its own secrets; the role that uses one checks it with [`check_secret`] at start).
pub fn check_written(value: &Option<Secret>, env: &Option<String>) -> Result<(), String> {
    match (value, env) {
        (Some(_), Some(_)) => Err("set the secret or its *_env key, not both".into()),
        (Some(Secret::Inline(_)), None) => check_secret(value, env),
        (Some(s), None) => match s.resolve() {
            Ok(_) => check_secret(value, env),
            Err(_) => Ok(()),
        },
        (None, Some(var)) => match Secret::Env(var.clone()).resolve() {
            Ok(_) => check_secret(value, env),
            Err(_) => Ok(()),
        },
        (None, None) => Ok(()),
    }
}

/// Values examples and templates use where a secret goes.
pub fn is_placeholder(secret: &str) -> bool {
    const PLACEHOLDERS: &[&str] = &[
        "change-me",
        "changeme",
        "change_me",
        "replace-me",
        "replaceme",
        "your-secret",
        "your_secret",
        "<secret>",
        "<redacted>",
        "todo",
        "xxx",
    ];
    let s = secret.trim().to_ascii_lowercase();
    PLACEHOLDERS.contains(&s.as_str())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str(REDACTED),
            Secret::Env(var) => write!(f, "{{ env = {var:?} }}"),
            Secret::File(path) => write!(f, "{{ file = {:?} }}", path.display().to_string()),
        }
    }
}

impl From<String> for Secret {
    fn from(v: String) -> Secret {
        Secret::Inline(v)
    }
}

impl From<&str> for Secret {
    fn from(v: &str) -> Secret {
        Secret::Inline(v.into())
    }
}

impl Serialize for Secret {
    // Faithful: environment overrides round-trip the configuration through this. Printing
    // goes through `redacted` first.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Secret::Inline(v) => s.serialize_str(v),
            Secret::Env(var) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("env", var)?;
                m.end()
            }
            Secret::File(path) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("file", path)?;
                m.end()
            }
        }
    }
}

const EXPECTED: &str = "the secret itself, { env = \"VARIABLE\" } or { file = \"/path/to/file\" }";

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        struct SecretVisitor;
        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::Inline(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format!("expected {EXPECTED}")));
                };
                let secret = match key.as_str() {
                    "env" => Secret::Env(map.next_value()?),
                    "file" => Secret::File(map.next_value()?),
                    other => {
                        return Err(de::Error::custom(format!(
                            "unknown key {other:?}: expected {EXPECTED}"
                        )))
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(format!(
                        "one of env or file, not both: expected {EXPECTED}"
                    )));
                }
                Ok(secret)
            }
        }
        d.deserialize_any(SecretVisitor)
    }
}

impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A secret: the value itself, { env: VARIABLE } or { file: /path/to/file }.",
            "oneOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "properties": { "env": { "type": "string", "minLength": 1 } },
                    "required": ["env"],
                    "additionalProperties": false
                },
                {
                    "type": "object",
                    "properties": { "file": { "type": "string", "minLength": 1 } },
                    "required": ["file"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct T {
        s: Secret,
    }

    #[test]
    fn three_forms_read_and_round_trip() {
        for text in [
            "s = \"hunter2\"",
            "s = { env = \"HOME\" }",
            "s = { file = \"/etc/hostname\" }",
        ] {
            let t: T = toml::from_str(text).unwrap();
            let again: T = toml::from_str(&toml::to_string(&t).unwrap()).unwrap();
            assert!(t.s == again.s, "{text}");
        }
        let t: T = serde_norway::from_str("s:\n  env: HOME\n").unwrap();
        assert_eq!(t.s, Secret::Env("HOME".into()));
    }

    #[test]
    fn files_lose_their_trailing_newline_and_empty_values_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "from-a-file\n").unwrap();
        assert_eq!(Secret::File(path.clone()).resolve().unwrap(), "from-a-file");
        std::fs::write(&path, "\n").unwrap();
        assert!(Secret::File(path.clone())
            .resolve()
            .unwrap_err()
            .contains("is empty"));
        assert!(Secret::File(dir.path().join("absent"))
            .resolve()
            .unwrap_err()
            .contains("cannot read"));
        assert!(Secret::Inline(String::new()).resolve().is_err());
        assert!(Secret::Env("WOOSTREAM_SURELY_UNSET_VARIABLE".into())
            .resolve()
            .unwrap_err()
            .contains("WOOSTREAM_SURELY_UNSET_VARIABLE is not set"));
    }

    #[test]
    fn debug_and_redacted_never_show_a_value() {
        let s = Secret::Inline("hunter2".into());
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(
            toml::to_string(&T { s: s.redacted() }).unwrap().trim(),
            "s = \"<redacted>\""
        );
        assert_eq!(
            Secret::Env("X".into()).redacted(),
            Secret::Env("X".into()),
            "a variable's name is not secret"
        );
    }

    #[test]
    fn a_wrong_shape_says_what_is_expected() {
        let e = toml::from_str::<T>("s = { path = \"x\" }").unwrap_err();
        assert!(e.to_string().contains("unknown key \"path\""), "{e}");
        let e = toml::from_str::<T>("s = { env = \"A\", file = \"b\" }").unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let e = toml::from_str::<T>("s = 7").unwrap_err();
        assert!(e.to_string().contains("{ env ="), "{e}");
    }
}
