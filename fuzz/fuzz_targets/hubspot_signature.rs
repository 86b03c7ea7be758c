//! The CRM inbound's first check: HubSpot's v3 signature and its timestamp, on any URL, body,
//! signature and timestamp header (a timestamp far in the past or future must not overflow).
#![no_main]

use libfuzzer_sys::fuzz_target;
use woostream_hubspot::signature::{sign, verify, Request};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let uri = parts.next().unwrap_or_default();
    let timestamp = parts.next().unwrap_or_default();
    let signature = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default().as_bytes();
    let now = 1_700_000_000_000;
    let request = Request {
        method: "POST",
        uri,
        body,
        signature: Some(signature),
        timestamp: Some(timestamp),
    };
    let _ = verify("fuzz-client-secret", &request, now, 300_000);
    // What HubSpot signs now always passes.
    let ts = now.to_string();
    let signed = sign("fuzz-client-secret", "POST", uri, body, &ts);
    let genuine = Request {
        signature: Some(&signed),
        timestamp: Some(&ts),
        ..request
    };
    assert!(verify("fuzz-client-secret", &genuine, now, 300_000).is_ok());
});
