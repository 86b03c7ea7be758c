//! Records as they come off a topic: any bytes, and real records with bytes changed or cut
//! short, are decoded or refused, never a panic (the direct decoder and apache-avro's).
#![no_main]

use libfuzzer_sys::fuzz_target;
use woostream_core::contract::codec::{Decoder, Encoder, Framing};
use woostream_core::contract::events::{CustomerEvent, IngestDeadLetter, OrderEvent, ProductEvent};
use woostream_core::contract::enriched::Alert;

fuzz_target!(|data: &[u8]| {
    let d = Decoder::new();
    let _ = d.decode::<OrderEvent>(data);
    let _ = d.decode::<ProductEvent>(data);
    let _ = d.decode::<CustomerEvent>(data);
    let _ = d.decode::<IngestDeadLetter>(data);
    let _ = d.decode::<Alert>(data);
    // The same bytes as the datum of a record with the right framing header: reaches the
    // decoders past the fingerprint check.
    let mut framed = Encoder::<OrderEvent>::new(&Framing::SingleObject)
        .header()
        .to_vec();
    framed.extend_from_slice(data);
    let _ = d.decode::<OrderEvent>(&framed);
});
