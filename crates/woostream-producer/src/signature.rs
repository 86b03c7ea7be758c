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
