//! Edge: the enricher's Kafka side as the loop holds it: the encoders and the decoder, the
//! producers (outputs, and restore markers outside any transaction), the writer thread, and
//! the key follower that opens sealed personal fields.

use std::sync::Arc;

use woostream_core::contract::codec::Decoder;
use woostream_core::privacy::SubjectKeys;

use super::outputs::{OutputProducer, Outputs};
use super::writer::Writer;

pub(super) struct Io {
    pub(super) outputs: Outputs,
    pub(super) decoder: Decoder,
    pub(super) with_registry: bool,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) producer: Arc<OutputProducer>,
    /// Encodes and sends the outputs beside the loop.
    pub(super) writer: Writer,
    /// Writes restore markers outside any transaction.
    pub(super) marker_producer: rdkafka::producer::FutureProducer,
    pub(super) transactional: bool,
    /// Opens sealed personal fields.
    pub(super) keys: SubjectKeys,
}
