//! Avro encoding of the topic contracts, in two framings.
//!
//! - Without a schema registry: Avro single-object encoding (`C3 01`, the 8-byte little-endian
//!   CRC-64-AVRO fingerprint of the schema's canonical form, then the datum).
//! - With a registry: Confluent wire format (`00`, 4-byte big-endian schema id, then the datum).
//!
//! One [`Decoder`] reads both. The schemas are compiled in from `schemas/`, the single source of
//! truth; nothing here restates a field.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use apache_avro::types::Value;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::contract::enriched::*;
use crate::contract::events::*;
use crate::contract::registry::RegistryClient;

/// Magic bytes of Avro single-object encoding.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// Magic byte of the Confluent wire format (version 0).
pub const CONFLUENT_MAGIC: u8 = 0x00;

/// A type with a schema in `schemas/`.
pub trait Contract: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// File name in `schemas/` without `.avsc`.
    const SCHEMA_NAME: &'static str;
    fn schema() -> &'static ContractSchema {
        contract(Self::SCHEMA_NAME)
    }
}

macro_rules! contracts {
    ($($ty:ty => $file:literal),* $(,)?) => {
        $(impl Contract for $ty { const SCHEMA_NAME: &'static str = $file; })*
        /// Every schema file with its text, compiled in.
        pub const SCHEMA_FILES: &[(&str, &str)] = &[
            $(($file, include_str!(concat!("../../../../schemas/", $file, ".avsc")))),*
        ];
    };
}

contracts! {
    OrderEvent => "order-event",
    ProductEvent => "product-event",
    CustomerEvent => "customer-event",
    CouponEvent => "coupon-event",
    ReviewEvent => "review-event",
    ActionEvent => "action-event",
    CustomerKey => "customer-key",
    ProductKey => "product-key",
    CouponKey => "coupon-key",
    ActionKey => "action-key",
    IngestDeadLetter => "ingest-dead-letter",
    String => "dead-letter-key",
    CustomerProfile => "customer-profile",
    Alert => "alert",
    AlertKey => "alert-key",
    ShopModel => "shop-model",
    crate::contract::enriched::Backtest => "backtest",
    crate::contract::sink_records::Delivery => "delivery",
    crate::contract::sink_records::CrmDeadLetter => "crm-dead-letter",
}

/// Registers each `(topic, "key" | "value", schema)` under `{topic}-{role}` (TopicNameStrategy)
/// and returns the Confluent framing of every schema by contract name. A schema used by several
/// topics (the customer key) gets one global id.
pub async fn register_subjects(
    registry: &RegistryClient,
    subjects: &[(&str, &str, &'static ContractSchema)],
) -> Result<HashMap<&'static str, Framing>, crate::contract::registry::RegistryError> {
    let mut framings = HashMap::new();
    for (topic, role, schema) in subjects {
        let schema_id = registry
            .register(&format!("{topic}-{role}"), schema.text)
            .await?;
        framings.insert(schema.name, Framing::Confluent { schema_id });
    }
    Ok(framings)
}

/// The framing of each contract a role writes and the decoder it reads with: Confluent
/// framing and registry look-ups when a schema registry is configured, single-object
/// encoding otherwise.
pub struct Codecs {
    framings: Option<HashMap<&'static str, Framing>>,
    pub decoder: Decoder,
}

impl Codecs {
    /// Registers `subjects` when the configuration names a registry.
    pub async fn register(
        config: &crate::config::Config,
        subjects: &[(&str, &str, &'static ContractSchema)],
    ) -> Result<Codecs, crate::contract::registry::RegistryError> {
        Ok(match &config.schema_registry {
            None => Codecs {
                framings: None,
                decoder: Decoder::new(),
            },
            Some(r) => {
                let client = crate::contract::registry::RegistryClient::from_config(r);
                Codecs {
                    framings: Some(register_subjects(&client, subjects).await?),
                    decoder: Decoder::with_registry(client),
                }
            }
        })
    }

    pub fn encoder<T: Contract>(&self) -> Encoder<T> {
        Encoder::new(&self.framing(T::SCHEMA_NAME))
    }

    /// The framing of the contract named `schema_name` (single-object without a registry).
    pub fn framing(&self, schema_name: &str) -> Framing {
        self.framings
            .as_ref()
            .and_then(|f| f.get(schema_name).cloned())
            .unwrap_or(Framing::SingleObject)
    }

    /// Decodes, asking the registry for a schema it has not seen (blocking callers use
    /// [`Decoder::decode`] after the ids are known).
    pub async fn decode<T: Contract>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        if self.framings.is_some() {
            self.decoder.decode_async(bytes).await
        } else {
            self.decoder.decode(bytes)
        }
    }
}

/// A parsed contract schema with what framing needs precomputed.
#[derive(Debug)]
pub struct ContractSchema {
    pub name: &'static str,
    pub text: &'static str,
    pub schema: Schema,
    /// CRC-64-AVRO (Rabin) fingerprint of the parsing canonical form, little-endian.
    pub fingerprint: [u8; 8],
    /// The same schema for the direct decoder, with decimals read as their raw bytes (the
    /// encoding is identical; [`crate::Money`] turns the bytes into an amount without a detour
    /// through text).
    direct: serde_avro_fast::Schema,
}

fn all_contracts() -> &'static HashMap<&'static str, ContractSchema> {
    static CONTRACTS: OnceLock<HashMap<&'static str, ContractSchema>> = OnceLock::new();
    CONTRACTS.get_or_init(|| {
        SCHEMA_FILES
            .iter()
            .map(|(name, text)| {
                let schema = Schema::parse_str(text)
                    .unwrap_or_else(|e| panic!("schemas/{name}.avsc is not valid Avro: {e}"));
                let fingerprint = fingerprint_of(&schema);
                let direct =
                    direct_schema(text).unwrap_or_else(|e| panic!("schemas/{name}.avsc: {e}"));
                (
                    *name,
                    ContractSchema {
                        name,
                        text,
                        schema,
                        fingerprint,
                        direct,
                    },
                )
            })
            .collect()
    })
}

include!(concat!(env!("OUT_DIR"), "/schema_history.rs"));

/// A released version of a contract schema, from `schemas/history/`.
#[derive(Debug)]
pub struct HistoricSchema {
    /// The contract it is a version of (file name in `schemas/` without `.avsc`).
    pub contract: &'static str,
    pub schema: Schema,
}

/// Every released schema version by fingerprint: what any older build may have written.
fn history() -> &'static HashMap<[u8; 8], HistoricSchema> {
    static HISTORY: OnceLock<HashMap<[u8; 8], HistoricSchema>> = OnceLock::new();
    HISTORY.get_or_init(|| {
        SCHEMA_HISTORY
            .iter()
            .map(|(contract, file, text)| {
                let schema = Schema::parse_str(text).unwrap_or_else(|e| {
                    panic!("schemas/history/{contract}/{file}.avsc is not valid Avro: {e}")
                });
                (fingerprint_of(&schema), HistoricSchema { contract, schema })
            })
            .collect()
    })
}

/// The schema a single-object record was written with, when this build knows it: one of its
/// own contracts or a released version of one.
pub fn writer_schema(fingerprint: &[u8; 8]) -> Option<&'static Schema> {
    all_contracts()
        .values()
        .find(|c| &c.fingerprint == fingerprint)
        .map(|c| &c.schema)
        .or_else(|| history().get(fingerprint).map(|h| &h.schema))
}

pub fn contract(name: &str) -> &'static ContractSchema {
    all_contracts()
        .get(name)
        .unwrap_or_else(|| panic!("no schema named {name} in schemas/"))
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{schema}: value does not match the schema: {source}")]
    Encode {
        schema: &'static str,
        #[source]
        source: apache_avro::Error,
    },
    #[error("{schema}: value does not match the schema: {source}")]
    EncodeDirect {
        schema: &'static str,
        #[source]
        source: serde_avro_fast::ser::SerError,
    },
    #[error("{0} bytes are too short for any framing")]
    TooShort(usize),
    #[error("unknown framing (first byte {0:#04x}): neither Confluent (0x00) nor single-object (0xC3 0x01)")]
    UnknownFraming(u8),
    #[error("single-object fingerprint {0} matches no schema this build knows (a newer writer: upgrade this role)")]
    UnknownFingerprint(String),
    #[error("schema id {0} is not known and no registry can resolve it")]
    UnknownSchemaId(i32),
    #[error("{schema}: cannot decode the datum: {source}")]
    Decode {
        schema: &'static str,
        #[source]
        source: apache_avro::Error,
    },
    #[error("{schema}: cannot decode the datum: {source}")]
    DecodeDirect {
        schema: &'static str,
        #[source]
        source: serde_avro_fast::de::DeError,
    },
    #[error("registry: {0}")]
    Registry(#[from] crate::contract::registry::RegistryError),
}

impl CodecError {
    /// The record was written with a schema this build has never seen: by a newer release
    /// (during a rolling upgrade). It is not bad data: a reader must stop before it, not skip
    /// it, and read it once upgraded.
    pub fn is_newer_writer(&self) -> bool {
        matches!(self, CodecError::UnknownFingerprint(_))
    }
}

/// Whether `e` (or anything in its chain) is a record from a newer writer.
pub fn newer_writer(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<CodecError>()
            .is_some_and(CodecError::is_newer_writer)
    })
}

/// How a topic's records are framed: fixed per encoder so the hot path only copies bytes.
#[derive(Clone, Debug)]
pub enum Framing {
    SingleObject,
    Confluent { schema_id: i32 },
}

/// Encodes one contract type with a precomputed header.
#[derive(Clone)]
pub struct Encoder<T: Contract> {
    header: Vec<u8>,
    _t: std::marker::PhantomData<fn(&T)>,
}

impl<T: Contract> Encoder<T> {
    pub fn new(framing: &Framing) -> Encoder<T> {
        let header = match framing {
            Framing::SingleObject => {
                let mut h = SINGLE_OBJECT_MAGIC.to_vec();
                h.extend_from_slice(&T::schema().fingerprint);
                h
            }
            Framing::Confluent { schema_id } => {
                let mut h = vec![CONFLUENT_MAGIC];
                h.extend_from_slice(&schema_id.to_be_bytes());
                h
            }
        };
        Encoder {
            header,
            _t: std::marker::PhantomData,
        }
    }

    /// The framing bytes every record of `T` starts with.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    pub fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let cs = T::schema();
        // Serialises straight into Avro binary, guided by the schema (unions, enum symbols by
        // name, decimals as the bytes Money writes): no intermediate value tree.
        let mut config = serde_avro_fast::ser::SerializerConfig::new(&cs.direct);
        let mut out = Vec::with_capacity(self.header.len() + 256);
        out.extend_from_slice(&self.header);
        serde_avro_fast::to_datum(value, out, &mut config).map_err(|source| {
            CodecError::EncodeDirect {
                schema: cs.name,
                source,
            }
        })
    }
}

/// Encodes a datum of `T` with apache-avro: the reference the direct encoder is checked
/// against (the same bytes) and measured beside (`make bench-enrich`).
pub fn encode_with_apache_avro<T: Contract>(value: &T) -> Result<Vec<u8>, CodecError> {
    let cs = T::schema();
    let mut out = Vec::new();
    apache_avro::write_avro_datum_ref(&cs.schema, value, &mut out).map_err(|source| {
        CodecError::Encode {
            schema: cs.name,
            source,
        }
    })?;
    Ok(out)
}

/// A writer schema learned by Confluent id, with its fingerprint.
type WriterSchema = (Schema, [u8; 8]);

/// Decodes any contract type from either framing.
#[derive(Clone, Default)]
pub struct Decoder {
    registry: Option<RegistryClient>,
    writer_schemas: Arc<RwLock<HashMap<i32, Arc<WriterSchema>>>>,
}

impl Decoder {
    /// A decoder for single-object framing and for Confluent ids it is told about.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// The decoder the configuration asks for: with its schema registry, when it names one.
    pub fn for_config(config: &crate::config::Config) -> Decoder {
        match &config.schema_registry {
            None => Decoder::new(),
            Some(r) => Decoder::with_registry(RegistryClient::from_config(r)),
        }
    }

    /// A decoder that can also fetch unknown Confluent schema ids from a registry.
    pub fn with_registry(registry: RegistryClient) -> Decoder {
        Decoder {
            registry: Some(registry),
            ..Decoder::default()
        }
    }

    /// Teaches the decoder a schema id without asking the registry (ids we registered).
    pub fn learn(&self, id: i32, schema: Schema) {
        let fingerprint = fingerprint_of(&schema);
        self.writer_schemas
            .write()
            .expect("schema cache poisoned")
            .insert(id, Arc::new((schema, fingerprint)));
    }

    pub fn decode<T: Contract>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let reader = T::schema();
        match framing_of(bytes)? {
            Frame::SingleObject { fingerprint, datum } => {
                if fingerprint == reader.fingerprint {
                    return decode_datum::<T>(None, datum);
                }
                let writer = writer_schema(&fingerprint)
                    .ok_or_else(|| CodecError::UnknownFingerprint(hex::encode(fingerprint)))?;
                decode_datum(Some(writer), datum)
            }
            Frame::Confluent { schema_id, datum } => {
                let writer = self
                    .writer_schemas
                    .read()
                    .expect("schema cache poisoned")
                    .get(&schema_id)
                    .cloned()
                    .ok_or(CodecError::UnknownSchemaId(schema_id))?;
                let (schema, fingerprint) = &*writer;
                let writer = (*fingerprint != reader.fingerprint).then_some(schema);
                decode_datum(writer, datum)
            }
        }
    }

    /// [`Decoder::decode_async`] from a thread outside the runtime (a Kafka reader's, a
    /// blocking task's): an unknown schema id is fetched through `handle`. A record written
    /// under an id this role did not register itself (an older or newer release's schema, or
    /// one another role registered) is read, not taken for damage.
    pub fn decode_blocking<T: Contract>(
        &self,
        handle: &tokio::runtime::Handle,
        bytes: &[u8],
    ) -> Result<T, CodecError> {
        match self.decode(bytes) {
            Err(CodecError::UnknownSchemaId(_)) if self.registry.is_some() => {
                handle.block_on(self.decode_async(bytes))
            }
            other => other,
        }
    }

    /// Like [`Decoder::decode`], fetching an unknown Confluent schema id from the registry first.
    pub async fn decode_async<T: Contract>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        match self.decode(bytes) {
            Err(CodecError::UnknownSchemaId(id)) => {
                let registry = self
                    .registry
                    .as_ref()
                    .ok_or(CodecError::UnknownSchemaId(id))?;
                let text = registry.schema_by_id(id).await?;
                let schema = Schema::parse_str(&text).map_err(|source| CodecError::Decode {
                    schema: T::SCHEMA_NAME,
                    source,
                })?;
                self.learn(id, schema);
                self.decode(bytes)
            }
            other => other,
        }
    }
}

enum Frame<'a> {
    SingleObject {
        fingerprint: [u8; 8],
        datum: &'a [u8],
    },
    Confluent {
        schema_id: i32,
        datum: &'a [u8],
    },
}

fn framing_of(bytes: &[u8]) -> Result<Frame<'_>, CodecError> {
    match bytes {
        [0xC3, 0x01, rest @ ..] if rest.len() >= 8 => {
            let mut fingerprint = [0u8; 8];
            fingerprint.copy_from_slice(&rest[..8]);
            Ok(Frame::SingleObject {
                fingerprint,
                datum: &rest[8..],
            })
        }
        [CONFLUENT_MAGIC, a, b, c, d, datum @ ..] => Ok(Frame::Confluent {
            schema_id: i32::from_be_bytes([*a, *b, *c, *d]),
            datum,
        }),
        [first, ..] if bytes.len() >= 5 => Err(CodecError::UnknownFraming(*first)),
        _ => Err(CodecError::TooShort(bytes.len())),
    }
}

/// Decodes a datum of `T` written with `writer` (None: `T`'s own schema, no resolution).
///
/// The reader's own schema — every record woostream wrote with this build — is decoded
/// straight into `T` (serde_avro_fast: no value tree, no per-record schema walk of apache-avro);
/// another writer schema goes through apache-avro's schema resolution, which fills defaults,
/// skips removed fields and promotes types as the Avro specification says.
fn decode_datum<T: Contract>(writer: Option<&Schema>, mut datum: &[u8]) -> Result<T, CodecError> {
    let Some(writer) = writer else {
        return decode_direct_datum(datum);
    };
    let reader = T::schema();
    let start = datum;
    let resolved = from_value_tree(apache_avro::from_avro_datum_reader_schemata(
        writer,
        vec![writer],
        &mut datum,
        Some(&reader.schema),
        vec![&reader.schema],
    ));
    match resolved {
        Ok(value) => Ok(value),
        // apache-avro cannot resolve a union of a record that gained fields (an older
        // `Order` inside `[null, Order]`): read the datum as its writer wrote it and let the
        // fields this build added take their defaults (every added field has one, in the
        // schema and in the Rust type).
        Err(resolution) => {
            let mut datum = start;
            from_value_tree(apache_avro::from_avro_datum(writer, &mut datum, None))
                .map_err(|_| resolution)
        }
    }
}

/// Decodes a datum of `T`'s own schema straight into `T` (what [`Decoder::decode`] does for
/// every record written with this build's schemas).
pub fn decode_direct_datum<T: Contract>(datum: &[u8]) -> Result<T, CodecError> {
    let reader = T::schema();
    serde_avro_fast::from_datum_slice(datum, &reader.direct).map_err(|source| {
        CodecError::DecodeDirect {
            schema: reader.name,
            source,
        }
    })
}

/// Decodes a datum of `T`'s own schema through apache-avro's value tree: the decoder woostream
/// used before the direct one, kept as the reference the direct decoder is checked against
/// and measured beside (`make bench-enrich`).
pub fn decode_through_values<T: Contract>(mut datum: &[u8]) -> Result<T, CodecError> {
    from_value_tree(apache_avro::from_avro_datum(
        &T::schema().schema,
        &mut datum,
        None,
    ))
}

/// `T` from an apache-avro value tree (or the error that came instead of one).
fn from_value_tree<T: Contract>(value: Result<Value, apache_avro::Error>) -> Result<T, CodecError> {
    let err = |source| CodecError::Decode {
        schema: T::SCHEMA_NAME,
        source,
    };
    apache_avro::from_value(&plain(value.map_err(err)?)).map_err(err)
}

/// The schema text with every `decimal` logical type removed, so the direct decoder hands
/// [`crate::Money`] the two's-complement bytes instead of formatting a decimal as text.
fn direct_schema(text: &str) -> Result<serde_avro_fast::Schema, String> {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                if o.get("logicalType").and_then(|l| l.as_str()) == Some("decimal") {
                    o.remove("logicalType");
                    o.remove("precision");
                    o.remove("scale");
                }
                o.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    strip(&mut json);
    json.to_string()
        .parse()
        .map_err(|e| format!("not a schema the direct decoder accepts: {e}"))
}

/// CRC-64-AVRO of the schema's Parsing Canonical Form, little-endian, as single-object
/// encoding carries it.
pub fn fingerprint_of(schema: &Schema) -> [u8; 8] {
    let json: serde_json::Value =
        serde_json::to_value(schema).expect("a parsed schema serialises to JSON");
    let pcf = parsing_canonical_form(&json, None, &mut Default::default());
    // apache-avro's Rabin digest is the specification's CRC-64-AVRO, little-endian.
    use digest::Digest;
    apache_avro::rabin::Rabin::digest(pcf.as_bytes()).into()
}

/// The Avro specification's Parsing Canonical Form. Written out here because apache-avro keeps
/// `precision` and `scale`, which the specification (and Java, fastavro, Confluent) strip; a
/// different form would give a fingerprint no other Avro library recognises.
pub fn parsing_canonical_form(
    v: &serde_json::Value,
    namespace: Option<&str>,
    defined: &mut std::collections::HashSet<String>,
) -> String {
    use serde_json::Value as J;
    const PRIMITIVES: &[&str] = &[
        "null", "boolean", "int", "long", "float", "double", "bytes", "string",
    ];
    let full = |name: &str, ns: Option<&str>| match ns {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_string(),
    };
    match v {
        J::String(s) if PRIMITIVES.contains(&s.as_str()) => format!("\"{s}\""),
        J::String(s) => format!("\"{}\"", full(s, namespace)),
        J::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| parsing_canonical_form(i, namespace, defined))
                .collect::<Vec<_>>()
                .join(",")
        ),
        J::Object(o) => {
            let ty = o.get("type").and_then(J::as_str).unwrap_or_default();
            if !matches!(ty, "record" | "enum" | "fixed" | "array" | "map") {
                // Primitives, logical types on primitives, and `{"type": <schema>}` wrappers.
                return parsing_canonical_form(&o["type"], namespace, defined);
            }
            let mut parts = Vec::new();
            let mut ns = namespace.map(str::to_string);
            if let Some(name) = o.get("name").and_then(J::as_str) {
                let own_ns = o.get("namespace").and_then(J::as_str).or(namespace);
                let name = full(name, own_ns);
                if !defined.insert(name.clone()) {
                    return format!("\"{name}\"");
                }
                ns = name.rsplit_once('.').map(|(n, _)| n.to_string());
                parts.push(format!("\"name\":\"{name}\""));
            }
            parts.push(format!("\"type\":\"{ty}\""));
            if let Some(J::Array(fields)) = o.get("fields") {
                let fs: Vec<String> = fields
                    .iter()
                    .map(|f| {
                        format!(
                            "{{\"name\":\"{}\",\"type\":{}}}",
                            f["name"].as_str().unwrap_or_default(),
                            parsing_canonical_form(&f["type"], ns.as_deref(), defined)
                        )
                    })
                    .collect();
                parts.push(format!("\"fields\":[{}]", fs.join(",")));
            }
            if let Some(J::Array(symbols)) = o.get("symbols") {
                let ss: Vec<String> = symbols.iter().map(|s| s.to_string()).collect();
                parts.push(format!("\"symbols\":[{}]", ss.join(",")));
            }
            for key in ["items", "values"] {
                if let Some(x) = o.get(key) {
                    parts.push(format!(
                        "\"{key}\":{}",
                        parsing_canonical_form(x, ns.as_deref(), defined)
                    ));
                }
            }
            if let Some(size) = o.get("size") {
                parts.push(format!("\"size\":{size}"));
            }
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// Rewrites what serde's derive cannot read from a decoded value: enum symbols become strings
/// (unions, decimals and timestamps are read as they are).
fn plain(v: Value) -> Value {
    match v {
        Value::Union(i, inner) => Value::Union(i, Box::new(plain(*inner))),
        Value::Enum(_, symbol) => Value::String(symbol),
        Value::Record(fields) => {
            Value::Record(fields.into_iter().map(|(k, v)| (k, plain(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(plain).collect()),
        other => other,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::contract::money::Money;
    use chrono::{TimeZone, Utc};

    fn envelope() -> Envelope {
        Envelope {
            event_id: "0123456789abcdef0123456789abcdef".into(),
            shop_id: "eu".into(),
            source: "https://shop.example.com/".into(),
            wc_topic: "order.updated".into(),
            webhook_id: Some(42),
            delivery_id: None,
            correlation_id: "c-1".into(),
            received_at: Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap(),
            origin: Origin::Webhook,
        }
    }

    fn m(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn address() -> Address {
        Address {
            first_name: Some("Zoë".into()),
            last_name: Some("Nowak".into()),
            address_1: Some("ul. Długa 5".into()),
            phone: Some("+48 600 100 200".into()),
            email: Some("zoe@example.com".into()),
            country: Some("PL".into()),
            ..Address::default()
        }
    }

    pub(crate) fn order() -> Order {
        let t = Some(Utc.with_ymd_and_hms(2017, 3, 22, 19, 28, 2).unwrap());
        Order {
            id: 727,
            parent_id: None,
            number: "727".into(),
            created_via: Some("checkout".into()),
            status: OrderStatus::OnHold,
            status_slug: "on-hold".into(),
            currency: "PLN".into(),
            prices_include_tax: true,
            created_at: t,
            modified_at: t,
            paid_at: None,
            completed_at: t,
            total: m("29.35"),
            total_tax: m("1.35"),
            subtotal: m("18.00"),
            discount_total: m("0"),
            discount_tax: m("0"),
            shipping_total: m("10.00"),
            shipping_tax: m("0"),
            cart_tax: m("1.35"),
            fee_total: m("-2.5"),
            refunded_total: m("10"),
            customer_id: None,
            customer_key: "guest:abc".into(),
            email_hash: Some("abc".into()),
            billing: Some(address()),
            shipping: None,
            payment_method: Some("bacs".into()),
            payment_method_title: None,
            transaction_id: None,
            line_items: vec![LineItem {
                id: 315,
                product_id: Some(93),
                variation_id: None,
                name: "Woo Single #1".into(),
                sku: None,
                quantity: 2,
                subtotal: m("6.00"),
                subtotal_tax: m("0.45"),
                total: m("6.00"),
                total_tax: m("0.45"),
                category_ids: vec![9, 14],
            }],
            coupon_codes: vec!["FLASH10".into()],
            refunds: vec![Refund {
                id: 726,
                reason: None,
                amount: m("10.00"),
            }],
            customer_note: Some("Please leave it with the neighbour".into()),
        }
    }

    pub(crate) fn round_trip<T: Contract + PartialEq + std::fmt::Debug>(value: T) {
        for framing in [Framing::SingleObject, Framing::Confluent { schema_id: 7 }] {
            let bytes = Encoder::<T>::new(&framing).encode(&value).unwrap();
            let decoder = Decoder::new();
            decoder.learn(7, T::schema().schema.clone());
            let back: T = decoder.decode(&bytes).unwrap();
            assert_eq!(back, value, "{} via {framing:?}", T::SCHEMA_NAME);
        }
        // The direct decoder and apache-avro's resolving one read the same datum alike.
        let bytes = Encoder::<T>::new(&Framing::SingleObject)
            .encode(&value)
            .unwrap();
        assert_eq!(
            &bytes[10..],
            encode_with_apache_avro(&value).unwrap(),
            "{}: the direct encoder writes what apache-avro writes",
            T::SCHEMA_NAME
        );
        let through_values: T = decode_through_values(&bytes[10..]).unwrap();
        assert_eq!(
            through_values,
            value,
            "{} through apache-avro",
            T::SCHEMA_NAME
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]
            /// A real record cut short or with bytes changed: decoded or refused, never a panic
            /// (both decoders: the direct one and apache-avro's resolving one).
            #[test]
            fn damaged_records_are_refused_not_panicked_on(
                cut in any::<prop::sample::Index>(),
                changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            ) {
                let event = OrderEvent {
                    envelope: envelope(),
                    action: Action::Updated,
                    order_id: 727,
                    order: Some(order()),
                };
                let mut bytes = Encoder::<OrderEvent>::new(&Framing::SingleObject)
                    .encode(&event)
                    .unwrap();
                for (at, value) in changes {
                    let i = 10 + at.index(bytes.len() - 10);
                    bytes[i] = value;
                }
                bytes.truncate(10 + cut.index(bytes.len() - 9));
                let _ = Decoder::new().decode::<OrderEvent>(&bytes);
                let _ = decode_through_values::<OrderEvent>(&bytes[10..]);
            }

            #[test]
            fn any_bytes_are_refused_not_panicked_on(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                let _ = Decoder::new().decode::<OrderEvent>(&bytes);
            }
        }
    }

    #[test]
    fn every_type_round_trips_through_its_schema() {
        round_trip(OrderEvent {
            envelope: envelope(),
            action: Action::Updated,
            order_id: 727,
            order: Some(order()),
        });
        round_trip(OrderEvent {
            envelope: envelope(),
            action: Action::Deleted,
            order_id: 727,
            order: None,
        });
        round_trip(ProductEvent {
            envelope: envelope(),
            action: Action::Created,
            product_id: 799,
            product: Some(Product {
                id: 799,
                parent_id: Some(1),
                product_type: "variation".into(),
                name: "Ship Your Idea".into(),
                slug: "ship-your-idea".into(),
                sku: Some("Bar3".into()),
                status: "publish".into(),
                price: Some(m("21.99")),
                regular_price: Some(m("21.99")),
                sale_price: None,
                on_sale: false,
                manage_stock: true,
                stock_quantity: Some(-3),
                stock_status: "onbackorder".into(),
                low_stock_amount: Some(5),
                categories: vec![Category {
                    id: 9,
                    name: "Clothing".into(),
                    slug: "clothing".into(),
                }],
                variation_ids: vec![800, 801],
                total_sales: Some(0),
                created_at: None,
                modified_at: Some(Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap()),
            }),
        });
        round_trip(CustomerEvent {
            envelope: envelope(),
            action: Action::Restored,
            customer_id: 25,
            customer: Some(CustomerRecord {
                id: 25,
                email: Some("john.doe@example.com".into()),
                email_hash: Some("h".into()),
                first_name: Some("John".into()),
                last_name: None,
                username: Some("john.doe".into()),
                role: "customer".into(),
                billing: Some(address()),
                shipping: Some(ShippingAddress::default()),
                is_paying_customer: false,
                created_at: None,
                modified_at: None,
            }),
        });
        round_trip(CouponEvent {
            envelope: envelope(),
            action: Action::Updated,
            coupon_id: 719,
            coupon: Some(Coupon {
                id: 719,
                code: "10off".into(),
                amount: m("10.00"),
                discount_type: "percent".into(),
                usage_count: 3,
                usage_limit: None,
                expires_at: None,
                created_at: None,
                modified_at: None,
            }),
        });
        round_trip(ReviewEvent {
            envelope: envelope(),
            action: Action::Created,
            review_id: 22,
            review: Some(Review {
                id: 22,
                product_id: 22,
                product_name: None,
                status: "approved".into(),
                rating: 1,
                verified: true,
                reviewer_email_hash: Some("h".into()),
                text: "Nice album!".into(),
                created_at: None,
            }),
        });
        round_trip(ActionEvent {
            envelope: envelope(),
            action_name: "woocommerce_low_stock".into(),
            arg_json: "{\"id\":1}".into(),
        });
        round_trip(CustomerKey {
            shop_id: "eu".into(),
            customer: "25".into(),
        });
        round_trip(ProductKey {
            shop_id: "eu".into(),
            product_id: 1,
        });
        round_trip(CouponKey {
            shop_id: "eu".into(),
            coupon_id: 1,
        });
        round_trip(ActionKey {
            shop_id: "eu".into(),
            action_name: "x".into(),
        });
        round_trip(IngestDeadLetter {
            received_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            correlation_id: "c".into(),
            shop_id: None,
            source: Some("https://shop.example.com/".into()),
            wc_topic: Some("order.created".into()),
            webhook_id: None,
            delivery_id: None,
            content_type: Some("application/json".into()),
            reason_code: "invalid_json".into(),
            reason: "expected value at line 1 column 1".into(),
            body_sha256: "00".into(),
            body_encryption: "none".into(),
            body: vec![0, 159, 146, 150],
        });
        round_trip("a correlation id".to_string());
    }

    /// Enums are written by variant index: every Rust variant must land on its own symbol.
    #[test]
    fn every_enum_variant_round_trips() {
        use OrderStatus::*;
        for status in [
            Pending,
            Processing,
            OnHold,
            Completed,
            Cancelled,
            Refunded,
            Failed,
            Trash,
            CheckoutDraft,
            ReadyForPickup,
            Draft,
            Other,
        ] {
            for (action, origin) in [
                (Action::Created, Origin::Webhook),
                (Action::Updated, Origin::Backfill),
                (Action::Deleted, Origin::Reconcile),
                (Action::Restored, Origin::Poll),
            ] {
                let mut o = order();
                o.status = status;
                let mut e = envelope();
                e.origin = origin;
                round_trip(OrderEvent {
                    envelope: e,
                    action,
                    order_id: 1,
                    order: Some(o),
                });
            }
        }
    }

    #[test]
    fn every_schema_file_has_a_rust_type() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".avsc"))
            .map(|n| n.trim_end_matches(".avsc").to_string())
            .collect();
        files.sort();
        let mut known: Vec<String> = SCHEMA_FILES.iter().map(|(n, _)| n.to_string()).collect();
        known.sort();
        assert_eq!(files, known);
    }

    /// Named types defined in several self-contained schema files must not drift apart.
    #[test]
    fn shared_named_types_are_identical_in_every_file() {
        fn collect(v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
            match v {
                serde_json::Value::Object(o) => {
                    if let (Some(name), Some(_)) = (o.get("name"), o.get("type")) {
                        if matches!(o["type"].as_str(), Some("record" | "enum" | "fixed")) {
                            out.push((name.as_str().unwrap().to_string(), v.clone()));
                        }
                    }
                    o.values().for_each(|x| collect(x, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
                _ => {}
            }
        }
        let mut seen: HashMap<String, (String, serde_json::Value)> = HashMap::new();
        for (file, text) in SCHEMA_FILES {
            let mut named = Vec::new();
            collect(&serde_json::from_str(text).unwrap(), &mut named);
            for (name, def) in named {
                if let Some((first, earlier)) = seen.get(&name) {
                    assert_eq!(earlier, &def, "{name} differs between {first} and {file}");
                } else {
                    seen.insert(name, (file.to_string(), def));
                }
            }
        }
        assert!(seen.contains_key("Envelope") && seen.contains_key("Address"));
    }

    #[test]
    fn canonical_form_follows_the_avro_specification() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","namespace":"a.b","doc":"x","fields":[
                {"name":"m","type":{"type":"bytes","logicalType":"decimal","precision":24,"scale":6}},
                {"name":"t","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
                {"name":"e","type":{"type":"enum","name":"E","symbols":["X","Y"],"default":"X"}},
                {"name":"e2","type":"E"},
                {"name":"l","type":{"type":"array","items":"string"}}]}"#,
        )
        .unwrap();
        let json = serde_json::to_value(&schema).unwrap();
        assert_eq!(
            parsing_canonical_form(&json, None, &mut Default::default()),
            r#"{"name":"a.b.R","type":"record","fields":[{"name":"m","type":"bytes"},{"name":"t","type":["null","long"]},{"name":"e","type":{"name":"a.b.E","type":"enum","symbols":["X","Y"]}},{"name":"e2","type":"a.b.E"},{"name":"l","type":{"type":"array","items":"string"}}]}"#
        );
        // The spec's example fingerprint input: "int" has CRC-64-AVRO 0x7275d51a3f395c8f.
        let int = Schema::parse_str(r#""int""#).unwrap();
        assert_eq!(u64::from_le_bytes(fingerprint_of(&int)), 0x7275d51a3f395c8f);
    }

    #[test]
    fn framing_headers_are_as_specified() {
        let key = CustomerKey {
            shop_id: "eu".into(),
            customer: "1".into(),
        };
        let so = Encoder::<CustomerKey>::new(&Framing::SingleObject)
            .encode(&key)
            .unwrap();
        assert_eq!(&so[..2], &[0xC3, 0x01]);
        assert_eq!(&so[2..10], &CustomerKey::schema().fingerprint);
        let cf = Encoder::<CustomerKey>::new(&Framing::Confluent { schema_id: 258 })
            .encode(&key)
            .unwrap();
        assert_eq!(&cf[..5], &[0, 0, 0, 1, 2]);
        assert_eq!(&so[10..], &cf[5..], "same datum under both framings");
        // An unknown id is reported, not guessed.
        assert!(matches!(
            Decoder::new().decode::<CustomerKey>(&cf),
            Err(CodecError::UnknownSchemaId(258))
        ));
        assert!(matches!(
            Decoder::new().decode::<CustomerKey>(b"{\"json\":1}"),
            Err(CodecError::UnknownFraming(b'{'))
        ));
    }

    #[test]
    fn values_that_break_the_schema_are_refused() {
        let mut o = order();
        o.line_items[0].quantity = 1;
        let bytes = Encoder::<OrderEvent>::new(&Framing::SingleObject)
            .encode(&OrderEvent {
                envelope: envelope(),
                action: Action::Created,
                order_id: 1,
                order: Some(o),
            })
            .unwrap();
        // Decoding with the wrong reader type fails loudly instead of mis-reading.
        assert!(Decoder::new().decode::<ProductEvent>(&bytes).is_err());
    }

    /// The binary datum of a value of `schema` (every union on its last branch, so a record
    /// inside `[null, Record]` is written; every array and map with one entry).
    fn sample_datum(schema: &Schema, names: &HashMap<String, &Schema>, out: &mut Vec<u8>) {
        use apache_avro::Schema as S;
        let string = |out: &mut Vec<u8>, s: &str| {
            out.push((s.len() as u8) << 1);
            out.extend_from_slice(s.as_bytes());
        };
        match schema {
            S::Null => {}
            S::Boolean => out.push(1),
            S::Int | S::Long | S::Date | S::TimeMillis | S::TimeMicros => out.push(2),
            S::TimestampMillis | S::TimestampMicros | S::TimestampNanos => out.push(2),
            S::LocalTimestampMillis | S::LocalTimestampMicros | S::LocalTimestampNanos => {
                out.push(2)
            }
            S::Float => out.extend_from_slice(&1f32.to_le_bytes()),
            S::Double => out.extend_from_slice(&1f64.to_le_bytes()),
            S::Bytes | S::BigDecimal => string(out, "\u{1}"),
            S::String => string(out, "x"),
            S::Uuid => string(out, "00000000-0000-4000-8000-000000000000"),
            S::Array(a) => {
                out.push(2);
                sample_datum(&a.items, names, out);
                out.push(0);
            }
            S::Map(m) => {
                out.push(2);
                string(out, "k");
                sample_datum(&m.types, names, out);
                out.push(0);
            }
            S::Union(u) => {
                let last = u.variants().len() - 1;
                out.push((last as u8) << 1);
                sample_datum(&u.variants()[last], names, out);
            }
            S::Record(r) => r
                .fields
                .iter()
                .for_each(|f| sample_datum(&f.schema, names, out)),
            S::Enum(_) => out.push(0),
            S::Fixed(f) => out.extend(std::iter::repeat_n(0, f.size)),
            S::Decimal(d) => match &*d.inner {
                S::Fixed(f) => out.extend(std::iter::repeat_n(0, f.size)),
                _ => string(out, "\u{1}"),
            },
            S::Duration => out.extend([0; 12]),
            S::Ref { name } => sample_datum(names[&name.fullname(None)], names, out),
        }
    }

    /// Decodes a single-object record as the contract `contract` names, with this build's reader.
    fn decode_as(contract: &str, bytes: &[u8]) -> Result<(), CodecError> {
        let d = Decoder::new();
        match contract {
            "order-event" => d.decode::<OrderEvent>(bytes).map(drop),
            "product-event" => d.decode::<ProductEvent>(bytes).map(drop),
            "customer-event" => d.decode::<CustomerEvent>(bytes).map(drop),
            "coupon-event" => d.decode::<CouponEvent>(bytes).map(drop),
            "review-event" => d.decode::<ReviewEvent>(bytes).map(drop),
            "action-event" => d.decode::<ActionEvent>(bytes).map(drop),
            "customer-key" => d.decode::<CustomerKey>(bytes).map(drop),
            "product-key" => d.decode::<ProductKey>(bytes).map(drop),
            "coupon-key" => d.decode::<CouponKey>(bytes).map(drop),
            "action-key" => d.decode::<ActionKey>(bytes).map(drop),
            "ingest-dead-letter" => d.decode::<IngestDeadLetter>(bytes).map(drop),
            "dead-letter-key" => d.decode::<String>(bytes).map(drop),
            "customer-profile" => d.decode::<CustomerProfile>(bytes).map(drop),
            "alert" => d.decode::<Alert>(bytes).map(drop),
            "alert-key" => d.decode::<AlertKey>(bytes).map(drop),
            "shop-model" => d.decode::<ShopModel>(bytes).map(drop),
            "backtest" => d
                .decode::<crate::contract::enriched::Backtest>(bytes)
                .map(drop),
            "delivery" => d
                .decode::<crate::contract::sink_records::Delivery>(bytes)
                .map(drop),
            "crm-dead-letter" => d
                .decode::<crate::contract::sink_records::CrmDeadLetter>(bytes)
                .map(drop),
            other => panic!("schemas/history/{other}: no contract of that name"),
        }
    }

    #[test]
    fn every_released_schema_version_is_filed_under_its_fingerprint_and_the_current_one_too() {
        for (contract, file, text) in SCHEMA_HISTORY {
            let schema = Schema::parse_str(text).unwrap();
            assert_eq!(
                hex::encode(fingerprint_of(&schema)),
                *file,
                "schemas/history/{contract}/{file}.avsc is filed under another fingerprint"
            );
        }
        // A schema changed without its new version in the history fails here: the history is
        // what every later build reads older records with.
        for (name, _) in SCHEMA_FILES {
            let current = hex::encode(contract(name).fingerprint);
            assert!(
                SCHEMA_HISTORY
                    .iter()
                    .any(|(c, f, _)| c == name && *f == current),
                "schemas/{name}.avsc ({current}) is not in schemas/history/{name}/: copy it there as {current}.avsc"
            );
        }
    }

    #[test]
    fn a_record_of_every_released_schema_version_is_read_by_this_build() {
        for (contract, file, text) in SCHEMA_HISTORY {
            let schema = Schema::parse_str(text).unwrap();
            let resolved = apache_avro::schema::ResolvedSchema::try_from(&schema).unwrap();
            let names: HashMap<String, &Schema> = resolved
                .get_names()
                .iter()
                .map(|(n, s)| (n.fullname(None), *s))
                .collect();
            let mut bytes = SINGLE_OBJECT_MAGIC.to_vec();
            bytes.extend_from_slice(&fingerprint_of(&schema));
            sample_datum(&schema, &names, &mut bytes);
            decode_as(contract, &bytes).unwrap_or_else(|e| {
                panic!("a record of schemas/history/{contract}/{file}.avsc cannot be read: {e}")
            });
        }
    }

    #[test]
    fn a_record_of_a_schema_no_release_had_is_a_newer_writer_not_bad_data() {
        let newer = r#"{"type":"record","name":"CustomerKey","namespace":"woostream","fields":[{"name":"shop_id","type":"string"},{"name":"region","type":"string"}]}"#;
        let schema = Schema::parse_str(newer).unwrap();
        let mut bytes = SINGLE_OBJECT_MAGIC.to_vec();
        bytes.extend_from_slice(&fingerprint_of(&schema));
        bytes.extend_from_slice(&[2, b'a', 2, b'b']);
        let e = Decoder::new().decode::<CustomerKey>(&bytes).unwrap_err();
        assert!(e.is_newer_writer(), "{e}");
        assert!(newer_writer(&anyhow::Error::new(e).context("reading")));
        // A record that is merely broken is not one.
        let mut broken = SINGLE_OBJECT_MAGIC.to_vec();
        broken.extend_from_slice(&CustomerKey::schema().fingerprint);
        broken.push(0x7f);
        assert!(!Decoder::new()
            .decode::<CustomerKey>(&broken)
            .unwrap_err()
            .is_newer_writer());
    }
}
