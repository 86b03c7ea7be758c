//! A spool segment as a disk may hand it back: any bytes after the header are read without a
//! panic, and only records that were framed come out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use woostream_producer::spool::{read_segment_bytes, segment_bytes};

fuzz_target!(|data: &[u8]| {
    let _ = read_segment_bytes(data);
    let mut segment = segment_bytes(&[]);
    segment.extend_from_slice(data);
    let _ = read_segment_bytes(&segment);
});
