//! woostream's Avro codec against another Avro library: every kind of record a simulated sale
//! puts on the shop topics, and every profile and alert the enricher derives from it, is encoded
//! by woostream, decoded and written again by fastavro (given only `schemas/`), and decoded by
//! woostream into exactly the value it started from. What fastavro reads of woostream's records
//! field by field is checked on a real broker in `ingest_e2e.rs`.

use std::io::Write;
use std::process::{Command, Stdio};

use woostream_core::codec::{Contract, Decoder, Encoder, Framing};
use woostream_core::config::Config;
use woostream_core::events::{CustomerEvent, CustomerKey, OrderEvent, ProductEvent, ProductKey};
use woostream_core::insights::{Alert, AlertKey, CustomerProfile};
use woostream_enricher::model::Model;
use woostream_enricher::partition::{CustomerPartition, Settings};
use woostream_tests::enricher::sale_records;

/// fastavro's re-encoding of each record.
fn through_fastavro(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let root = woostream_tests::repo_root();
    let mut child = Command::new(woostream_tests::python())
        .arg(root.join("tests/independent/reencode.py"))
        .arg(root.join("schemas"))
        .current_dir(root.join("tests/independent"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the fastavro re-encoder (make tools installs its venv)");
    let mut stdin = child.stdin.take().unwrap();
    let input: String = records.iter().map(|r| format!("{}\n", hex(r))).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    // The re-encoder's own failure explains a broken pipe on our side, so it is reported first.
    assert!(
        out.status.success(),
        "fastavro re-encoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    writer.join().unwrap().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(unhex)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Each value survives woostream → fastavro → woostream unchanged.
fn assert_read_back<T: Contract + PartialEq + std::fmt::Debug>(values: &[T]) -> usize {
    assert!(!values.is_empty(), "no {} to check", T::SCHEMA_NAME);
    let encoder = Encoder::<T>::new(&Framing::SingleObject);
    let ours: Vec<Vec<u8>> = values.iter().map(|v| encoder.encode(v).unwrap()).collect();
    let theirs = through_fastavro(&ours);
    assert_eq!(theirs.len(), values.len(), "{}", T::SCHEMA_NAME);
    let decoder = Decoder::new();
    for (value, bytes) in values.iter().zip(&theirs) {
        let back: T = decoder
            .decode(bytes)
            .unwrap_or_else(|e| panic!("{}: reading fastavro's bytes: {e}", T::SCHEMA_NAME));
        assert_eq!(&back, value, "{} as fastavro wrote it", T::SCHEMA_NAME);
    }
    values.len()
}

#[test]
fn woostream_reads_what_fastavro_writes_for_every_record_of_a_sale() {
    let config = Config::default();
    let t = &config.topics;
    let decoder = Decoder::new();
    let records = sale_records(300, 100, 17);
    fn of<'a>(
        records: &'a [woostream_producer::publish::Record],
        topic: &'a str,
    ) -> impl Iterator<Item = &'a woostream_producer::publish::Record> {
        records.iter().filter(move |r| r.topic == topic)
    }
    let orders: Vec<OrderEvent> = of(&records, &t.orders.name)
        .map(|r| decoder.decode(&r.value).unwrap())
        .collect();
    let customer_keys: Vec<CustomerKey> = of(&records, &t.orders.name)
        .map(|r| decoder.decode(&r.key).unwrap())
        .collect();
    let customers: Vec<CustomerEvent> = of(&records, &t.customers.name)
        .map(|r| decoder.decode(&r.value).unwrap())
        .collect();
    let products: Vec<ProductEvent> = of(&records, &t.products.name)
        .map(|r| decoder.decode(&r.value).unwrap())
        .collect();
    let product_keys: Vec<ProductKey> = of(&records, &t.products.name)
        .map(|r| decoder.decode(&r.key).unwrap())
        .collect();

    // What the enricher writes for those orders.
    let e = &config.enricher;
    let settings = Settings::from_config(e).unwrap();
    let model = Model::prior(e);
    let mut partition = CustomerPartition::new(0);
    let (mut profiles, mut alerts, mut alert_keys) = (Vec::new(), Vec::new(), Vec::new());
    for (offset, (key, order)) in customer_keys.iter().zip(&orders).enumerate() {
        let out = partition.on_order(key, order, offset as i64, &model, &settings);
        profiles.extend(out.profiles.into_iter().filter_map(|(_, p)| p));
        for (k, a) in out.alerts {
            alert_keys.push(k);
            alerts.push(a);
        }
    }
    let checked = assert_read_back(&orders)
        + assert_read_back(&customer_keys)
        + assert_read_back(&customers)
        + assert_read_back(&products)
        + assert_read_back(&product_keys)
        + assert_read_back::<CustomerProfile>(&profiles)
        + assert_read_back::<Alert>(&alerts)
        + assert_read_back::<AlertKey>(&alert_keys);
    assert!(checked > 1_000, "{checked} records checked");
}
