//! Personal data: kept out of what woostream repeats, sealed where Kafka keeps it, and erased
//! so that it can no longer be read.
//!
//! Erasure that erases: personal fields are sealed per person (crypto shredding), and an
//! erasure deletes the person's keys, so what Kafka keeps about them — in topics whose records
//! cannot be removed in place — can no longer be read by anyone.
//!
//! - [`pseudonym`]: the keyed hashes that stand for customers and persons in keys and ids.
//! - [`redact`]: messages from outside cleaned before logs, dead-letter reasons and audits.
//! - [`cipher`]: ChaCha20-Poly1305 under a configured key (dead letters, the wrapping of
//!   person keys).
//! - [`keyring`]: the per-person keys and their records in the compacted key topic.
//! - [`seal`]: one personal text value sealed under a person's key, and opened again.
//! - [`personal`]: which fields of which event are personal, sealed and opened together.
//! - [`subject_keys`]: the key topic followed by a role (and extended, by the producer).
//! - [`erase`]: one erasure carried out: keys deleted, the person's compacted records
//!   tombstoned, a receipt in the audit topic.
//! - [`receipt`]: the receipts every role leaves, and reading them back for `erase --status`.
//! - [`erased`]: the erased-subject list, followed by every role that makes keys or contacts.

pub mod cipher;
pub mod erase;
pub mod erased;
pub mod keyring;
pub mod personal;
pub mod pseudonym;
pub mod receipt;
pub mod redact;
pub mod seal;
pub mod subject_keys;

pub use keyring::{Keyring, SubjectKey};
pub use pseudonym::CustomerHasher;
pub use seal::Opened;
pub use subject_keys::{OpenError, SubjectKeys};

/// Header on the tombstones an erasure writes to the customers topic: the erasure's id. The
/// roles that read the customers topic (enricher, CRM sink) act on it and cite it in their
/// receipts.
pub const ERASURE_HEADER: &str = "woostream-erasure-id";
