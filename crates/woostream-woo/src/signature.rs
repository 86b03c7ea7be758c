//! WooCommerce's webhook signature: `base64(HMAC-SHA256(raw body bytes, secret))`.
//!
//! The HMAC covers the bytes exactly as received (PHP escapes `/` as `\/`, so re-serialising
//! would break it). The key is the secret as the admin typed it: WooCommerce stores it
//! HTML-escaped but signs with `wp_specialchars_decode(secret)`, i.e. the typed form.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The `X-WC-Webhook-Signature` value WooCommerce sends for `body`.
pub fn sign(body: &[u8], secret: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` is WooCommerce's signature of `body` with `secret`, compared in constant
/// time. Surrounding whitespace in the header is tolerated; anything else is not.
pub fn verify(body: &[u8], secret: &str, signature: &str) -> bool {
    let Ok(given) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    given.len() == expected.len() && bool::from(given.ct_eq(&expected))
}

/// The secret of one webhook topic, derived from the shop's: `woostream webhooks sync` gives
/// each of woostream's webhooks its topic's secret, so a body signed for one topic does not
/// verify under another (WooCommerce signs only the body, and every `*.deleted` body is the
/// same `{"id":N}`: without it a trashed product's signed deletion would read as a customer's).
/// Letters, digits, `_` and `-` only, which WooCommerce stores and signs with unchanged.
pub fn topic_secret(shop_secret: &str, topic: &str) -> String {
    let mut mac =
        HmacSha256::new_from_slice(shop_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"woostream webhook topic secret|");
    mac.update(topic.as_bytes());
    format!(
        "wst_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// Which secret a delivery was signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignedWith {
    /// Its topic's secret (a webhook `webhooks sync` made or updated).
    Topic,
    /// The shop's own secret (a webhook made by hand, or before `webhooks sync` gave it its
    /// topic's): any topic header passes with it.
    Shop,
}

/// Whether `signature` signs `body` with the secret of `topic` (when the header names one) or,
/// unless `topic_only`, with the shop's own secret.
pub fn verify_for_topic(
    body: &[u8],
    shop_secret: &str,
    topic_secret: Option<&str>,
    topic_only: bool,
    signature: &str,
) -> Option<SignedWith> {
    if topic_secret.is_some_and(|t| verify(body, t, signature)) {
        Some(SignedWith::Topic)
    } else if !topic_only && verify(body, shop_secret, signature) {
        Some(SignedWith::Shop)
    } else {
        None
    }
}

/// WooCommerce's ping on webhook creation: form body `webhook_id=N`, no signature.
pub fn is_ping(body: &[u8]) -> bool {
    body.strip_prefix(b"webhook_id=")
        .is_some_and(|rest| !rest.is_empty() && rest.iter().all(u8::is_ascii_digit))
}

#[cfg(test)]
mod tests {
    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_signature_and_ping_input_is_answered_without_panicking(
                body in prop::collection::vec(any::<u8>(), 0..300),
                signature in ".{0,100}",
                secret in ".{1,40}",
            ) {
                let _ = is_ping(&body);
                prop_assert!(!verify(&body, &secret, &signature) || signature == sign(&body, &secret));
                prop_assert!(verify(&body, &secret, &sign(&body, &secret)));
            }
        }
    }

    use super::*;

    const FIXTURE: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/woocommerce/woo_order_example.webhook_body.json"
    ));

    #[test]
    fn a_topic_secret_verifies_its_topic_only() {
        let body = br#"{"id":42}"#;
        let product = topic_secret("shop-secret", "product.deleted");
        let customer = topic_secret("shop-secret", "customer.deleted");
        assert_ne!(product, customer);
        assert_ne!(product, topic_secret("other-shop", "product.deleted"));
        assert!(product
            .trim_start_matches("wst_")
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        let signed = sign(body, &product);
        // As its own topic: passes; relabelled as a customer deletion: refused.
        assert_eq!(
            verify_for_topic(body, "shop-secret", Some(&product), true, &signed),
            Some(SignedWith::Topic)
        );
        assert_eq!(
            verify_for_topic(body, "shop-secret", Some(&customer), false, &signed),
            None
        );
        // The shop's own secret passes any topic unless topic secrets are required.
        let shop_signed = sign(body, "shop-secret");
        assert_eq!(
            verify_for_topic(body, "shop-secret", Some(&customer), false, &shop_signed),
            Some(SignedWith::Shop)
        );
        assert_eq!(
            verify_for_topic(body, "shop-secret", Some(&customer), true, &shop_signed),
            None
        );
    }

    #[test]
    fn matches_the_vectors_in_protocols_md() {
        assert_eq!(
            sign(
                br#"{"id":727,"status":"processing","total":"29.35"}"#,
                "test-secret"
            ),
            "LKhM5LDdiOjNWzu2wcPEqCrxE8OormksRL2GyiJle8I="
        );
        assert_eq!(FIXTURE.len(), 2445);
        assert_eq!(
            sign(FIXTURE, "test-secret"),
            "WCffBJyJsh6CLBdefTe67GgjN207hFaMBXxakEJe9Bs="
        );
        assert!(verify(
            FIXTURE,
            "test-secret",
            "WCffBJyJsh6CLBdefTe67GgjN207hFaMBXxakEJe9Bs="
        ));
    }

    #[test]
    fn rejects_wrong_secret_altered_body_and_garbage() {
        let sig = sign(FIXTURE, "test-secret");
        assert!(!verify(FIXTURE, "test-secreT", &sig));
        let mut altered = FIXTURE.to_vec();
        altered[10] ^= 1;
        assert!(!verify(&altered, "test-secret", &sig));
        assert!(!verify(FIXTURE, "test-secret", ""));
        assert!(!verify(FIXTURE, "test-secret", "not base64!"));
        assert!(!verify(FIXTURE, "test-secret", &sig[..20]));
    }

    #[test]
    fn the_body_is_signed_as_received_not_re_serialised() {
        // The fixture escapes '/' as PHP does; serde would not, and the signature must differ.
        let v: serde_json::Value = serde_json::from_slice(FIXTURE).unwrap();
        let reserialised = serde_json::to_vec(&v).unwrap();
        assert_ne!(reserialised, FIXTURE);
        assert!(!verify(
            &reserialised,
            "test-secret",
            "WCffBJyJsh6CLBdefTe67GgjN207hFaMBXxakEJe9Bs="
        ));
    }

    #[test]
    fn secrets_with_html_special_characters_are_used_as_typed() {
        let typed = r#"a&b<c>"d'e"#;
        let sig = sign(b"{}", typed);
        assert!(verify(b"{}", typed, &sig));
        // The HTML-escaped form WooCommerce stores is a different key.
        assert!(!verify(b"{}", "a&amp;b&lt;c&gt;&quot;d&#039;e", &sig));
    }

    #[test]
    fn ping_is_recognised_exactly() {
        assert!(is_ping(b"webhook_id=12"));
        assert!(!is_ping(b"webhook_id="));
        assert!(!is_ping(b"webhook_id=12&x=1"));
        assert!(!is_ping(b"{\"webhook_id\":12}"));
    }
}
