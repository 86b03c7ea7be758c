//! HubSpot's v3 request signature: `X-HubSpot-Signature-v3` is base64(HMAC-SHA256(client
//! secret, method + URI + body + timestamp)), the timestamp (ms) in `X-HubSpot-Request-Timestamp`;
//! a timestamp older than five minutes is refused, so a captured request cannot be replayed.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    Missing(&'static str),
    Stale { age_ms: i64 },
    FromTheFuture,
    Mismatch,
}

impl Refused {
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Missing(_) => "missing_signature",
            Refused::Stale { .. } => "stale",
            Refused::FromTheFuture => "future",
            Refused::Mismatch => "bad_signature",
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Missing(h) => write!(f, "no {h} header"),
            Refused::Stale { age_ms } => {
                write!(f, "signed {} s ago (at most 300 s)", age_ms / 1000)
            }
            Refused::FromTheFuture => f.write_str("signed more than 5 minutes in the future"),
            Refused::Mismatch => {
                f.write_str("the signature does not match the app's client secret")
            }
        }
    }
}

/// A request as HubSpot signed it.
pub struct Request<'a> {
    pub method: &'a str,
    /// The URL HubSpot called, query included.
    pub uri: &'a str,
    pub body: &'a [u8],
    pub signature: Option<&'a str>,
    pub timestamp: Option<&'a str>,
}

fn mac(secret: &str, method: &str, uri: &str, body: &[u8], timestamp: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(method.as_bytes());
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    mac
}

/// The signature HubSpot sends for a request.
pub fn sign(secret: &str, method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
    let digest = mac(secret, method, uri, body, timestamp)
        .finalize()
        .into_bytes();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Checks a request's v3 signature at `now_ms`, allowing `max_age_ms` either way.
pub fn verify(secret: &str, r: &Request<'_>, now_ms: i64, max_age_ms: i64) -> Result<(), Refused> {
    let signature = r
        .signature
        .ok_or(Refused::Missing("X-HubSpot-Signature-v3"))?;
    let timestamp = r
        .timestamp
        .ok_or(Refused::Missing("X-HubSpot-Request-Timestamp"))?;
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Refused::Missing("X-HubSpot-Request-Timestamp"))?;
    // Any i64 can arrive in the header: the differences must not overflow.
    let age = now_ms.checked_sub(at).unwrap_or(i64::MAX);
    if age > max_age_ms {
        return Err(Refused::Stale { age_ms: age });
    }
    if at.checked_sub(now_ms).unwrap_or(i64::MAX) > max_age_ms {
        return Err(Refused::FromTheFuture);
    }
    let given = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| Refused::Mismatch)?;
    // Constant time: a forger learns nothing from how long the comparison took.
    mac(secret, r.method, r.uri, r.body, timestamp)
        .verify_slice(&given)
        .map_err(|_| Refused::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_request_is_answered_without_panicking_and_a_genuine_one_passes(
                uri in ".{0,120}",
                body in prop::collection::vec(any::<u8>(), 0..300),
                signature in ".{0,100}",
                timestamp in prop_oneof![any::<i64>().prop_map(|t| t.to_string()), ".{0,24}"],
            ) {
                let now = 1_700_000_000_000;
                let r = Request { method: "POST", uri: &uri, body: &body, signature: Some(&signature), timestamp: Some(&timestamp) };
                let _ = verify("secret", &r, now, 300_000);
                let ts = now.to_string();
                let sig = sign("secret", "POST", &uri, &body, &ts);
                let genuine = Request { signature: Some(&sig), timestamp: Some(&ts), ..r };
                prop_assert!(verify("secret", &genuine, now, 300_000).is_ok());
            }
        }
    }

    const URI: &str = "https://hooks.shop.example/webhooks/hubspot";
    const BODY: &[u8] = br#"[{"objectId":1}]"#;

    #[test]
    fn timestamps_at_the_ends_of_the_range_are_refused_not_overflowed() {
        for ts in [i64::MIN, i64::MAX] {
            let ts = ts.to_string();
            let r = Request {
                method: "POST",
                uri: URI,
                body: BODY,
                signature: Some("AAAA"),
                timestamp: Some(&ts),
            };
            assert!(
                verify("secret", &r, 1_700_000_000_000, 300_000).is_err(),
                "{ts}"
            );
        }
    }

    #[test]
    fn a_signed_request_passes_and_every_change_to_it_fails() {
        let now = 1_700_000_000_000;
        let ts = now.to_string();
        let sig = sign("secret", "POST", URI, BODY, &ts);
        let check = |method, uri, body: &[u8], sig: &str, ts: &str, at| {
            let r = Request {
                method,
                uri,
                body,
                signature: Some(sig),
                timestamp: Some(ts),
            };
            verify("secret", &r, at, 300_000)
        };
        assert_eq!(check("POST", URI, BODY, &sig, &ts, now), Ok(()));
        assert_eq!(check("POST", URI, BODY, &sig, &ts, now + 299_000), Ok(()));
        assert_eq!(
            check("GET", URI, BODY, &sig, &ts, now),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            check("POST", "https://evil.example/x", BODY, &sig, &ts, now),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            check("POST", URI, b"[]", &sig, &ts, now),
            Err(Refused::Mismatch)
        );
        let later = (now + 1).to_string();
        assert_eq!(
            check("POST", URI, BODY, &sig, &later, now),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            check("POST", URI, BODY, &sig, &ts, now + 301_000),
            Err(Refused::Stale { age_ms: 301_000 })
        );
        assert_eq!(
            check("POST", URI, BODY, &sig, &ts, now - 301_000),
            Err(Refused::FromTheFuture)
        );
        let other = sign("another secret", "POST", URI, BODY, &ts);
        assert_eq!(
            check("POST", URI, BODY, &other, &ts, now),
            Err(Refused::Mismatch)
        );
        let unsigned = Request {
            method: "POST",
            uri: URI,
            body: BODY,
            signature: None,
            timestamp: Some(&ts),
        };
        assert_eq!(
            verify("secret", &unsigned, now, 300_000),
            Err(Refused::Missing("X-HubSpot-Signature-v3"))
        );
    }
}
