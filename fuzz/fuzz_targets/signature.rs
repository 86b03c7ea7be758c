//! The first thing the public endpoint does with a request: the ping check and the signature
//! check, on any body and any signature header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use woostream_woo::signature::{is_ping, sign, verify};

fuzz_target!(|data: &[u8]| {
    let _ = is_ping(data);
    let split = data.len() / 2;
    let (body, header) = data.split_at(split);
    let header = String::from_utf8_lossy(header);
    let _ = verify(body, "fuzz-secret", &header);
    assert!(verify(body, "fuzz-secret", &sign(body, "fuzz-secret")));
});
