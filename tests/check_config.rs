//! `woostream check-config` as someone hunting for credentials reads it: every secret set in
//! the file, in the environment or in a file of its own, and none of them in the output —
//! which is the configuration in the user's own format, not a debug dump.

use std::process::Command;

use woostream_tests::enricher::woostream_bin;

/// Every secret woostream has, each with a value found nowhere else.
const SECRETS: &[&str] = &[
    "shop-webhook-secret-91f2",
    "sasl-password-2c1d",
    "key-password-77aa",
    "registry-password-0b3e",
    "registry-url-password-5e6f",
    "xoxb-slack-token-4d5e",
    "hooks-slack-webhook-8a9b",
    "pat-hubspot-token-6c7d",
    "librdkafka-option-secret-3f4a",
    "customer-hash-key-1e2f",
];

fn configuration(dir: &std::path::Path) -> String {
    let key_file = dir.join("hash-key");
    std::fs::write(&key_file, format!("{}\n", SECRETS[9])).unwrap();
    let dead_letter_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    format!(
        r##"[kafka]
bootstrap_servers = "127.0.0.1:9092"
[kafka.security]
protocol = "SASL_PLAINTEXT"
mechanism = "SCRAM-SHA-512"
username = "woostream"
password = "{sasl}"
key_password = {{ env = "WOOSTREAM_TEST_KEY_PASSWORD" }}
[kafka.options]
"sasl.oauthbearer.client.secret" = "{option}"
[schema_registry]
url = "https://registry:{url_password}@registry.example.com/"
username = "registry"
password = "{registry}"
[producer]
dead_letter_key = "{dead_letter_key}"
[[shops]]
id = "eu"
source = "https://shop.example.com/"
secret = "{shop}"
[slack]
token = "{slack}"
[[slack.channels]]
name = "#ops"
webhook_url = "https://hooks.slack.com/services/T0/B0/{webhook}"
[crm]
token = "{hubspot}"
dead_letter_key = {{ file = "{dead_letter_key_file}" }}
[privacy]
customer_hash_key = {{ file = "{key_file}" }}
"##,
        shop = SECRETS[0],
        sasl = SECRETS[1],
        registry = SECRETS[3],
        url_password = SECRETS[4],
        slack = SECRETS[5],
        webhook = SECRETS[6],
        hubspot = SECRETS[7],
        option = SECRETS[8],
        key_file = key_file.display(),
        dead_letter_key_file = {
            let f = dir.join("dead-letter-key");
            std::fs::write(&f, dead_letter_key).unwrap();
            f.display().to_string()
        },
    )
}

fn check_config(path: &std::path::Path) -> String {
    let out = Command::new(woostream_bin())
        .args(["check-config", "--config"])
        .arg(path)
        .env("WOOSTREAM_TEST_KEY_PASSWORD", SECRETS[2])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn no_secret_appears_in_check_config_in_either_format() {
    let dir = tempfile::tempdir().unwrap();
    let toml_path = dir.path().join("woostream.toml");
    std::fs::write(&toml_path, configuration(dir.path())).unwrap();
    let toml_out = check_config(&toml_path);
    for secret in SECRETS {
        assert!(!toml_out.contains(secret), "{secret} printed:\n{toml_out}");
    }
    assert!(
        !toml_out.contains("MDEyMzQ1Njc4"),
        "the dead-letter key is printed"
    );
    // The configuration as the user writes it, read back as TOML: secrets hidden, the places
    // they come from still shown, everything else as set.
    let body: String = toml_out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let printed: toml::Value = toml::from_str(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert_eq!(printed["shops"][0]["secret"].as_str(), Some("<redacted>"));
    assert_eq!(
        printed["kafka"]["security"]["key_password"]["env"].as_str(),
        Some("WOOSTREAM_TEST_KEY_PASSWORD")
    );
    // A managed Kafka's username is often an API key: hidden like the password.
    assert_eq!(
        printed["kafka"]["security"]["username"].as_str(),
        Some("<redacted>")
    );
    assert!(printed["privacy"]["customer_hash_key"]["file"].is_str());
    assert!(!toml_out.contains("Config {"), "not a debug dump");

    // The same configuration as YAML prints YAML.
    let value: toml::Value = toml::from_str(&configuration(dir.path())).unwrap();
    let yaml_path = dir.path().join("woostream.yaml");
    std::fs::write(&yaml_path, serde_norway::to_string(&value).unwrap()).unwrap();
    let yaml_out = check_config(&yaml_path);
    for secret in SECRETS {
        assert!(!yaml_out.contains(secret), "{secret} printed:\n{yaml_out}");
    }
    let printed: serde_norway::Value = serde_norway::from_str(&yaml_out).unwrap();
    assert_eq!(printed["slack"]["token"].as_str(), Some("<redacted>"));
}

/// `check-config` on `text`, which must fail; its error output.
fn refused(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("woostream.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(woostream_bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{text}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_secret_that_cannot_be_read_or_is_a_placeholder_fails_with_its_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(
        dir.path(),
        "[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n[[shops]]\nid = \"eu\"\nsource = \"https://shop.example.com/\"\nsecret = { file = \"/nonexistent/woostream-secret\" }\n",
    );
    assert!(err.contains("woostream.toml:6"), "{err}");
    assert!(err.contains("shops[0].secret"), "{err}");
    assert!(
        err.contains("cannot read /nonexistent/woostream-secret"),
        "{err}"
    );
    let err = refused(
        dir.path(),
        "[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n[slack]\ntoken = \"change-me\"\n",
    );
    assert!(err.contains("slack.token"), "{err}");
    assert!(err.contains("placeholder"), "{err}");
    let err = refused(
        dir.path(),
        "[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n[producer]\ndead_letter_key = \"dG9vIHNob3J0\"\n",
    );
    assert!(err.contains("producer.dead_letter_key"), "{err}");
    assert!(err.contains("32 random bytes"), "{err}");
}
