//! woostream's Avro codec against another Avro library: every kind of record a simulated sale
//! puts on the shop topics, and every profile and alert the enricher derives from it, is encoded
//! by woostream, decoded and written again by fastavro (given only `schemas/`), and decoded by
//! woostream into exactly the value it started from. What fastavro reads of woostream's records
//! field by field is checked on a real broker in `ingest_e2e.rs`.

use std::io::Write;
use std::process::{Command, Stdio};

use woostream_core::config::Config;
use woostream_core::contract::codec::{Contract, Decoder, Encoder, Framing};
use woostream_core::contract::enriched::{Alert, AlertKey, CustomerProfile};
use woostream_core::contract::events::{
    CustomerEvent, CustomerKey, OrderEvent, ProductEvent, ProductKey,
};
use woostream_enricher::model::Model;
use woostream_enricher::partition::{CustomerPartition, Settings};
use woostream_tests::enricher::sale_records;

/// Runs `tests/independent/<script> <args>` with `records` as hex lines on its stdin; its
/// stdout lines.
fn through_python(script: &str, args: &[std::path::PathBuf], records: &[Vec<u8>]) -> Vec<String> {
    let root = woostream_tests::repo_root();
    let mut child = Command::new(woostream_tests::python())
        .arg(root.join("tests/independent").join(script))
        .args(args)
        .current_dir(root.join("tests/independent"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {script} (make tools installs its venv): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input: String = records.iter().map(|r| format!("{}\n", hex(r))).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    // The script's own failure explains a broken pipe on our side, so it is reported first.
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    writer.join().unwrap().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// fastavro's re-encoding of each record.
fn through_fastavro(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let schemas = woostream_tests::repo_root().join("schemas");
    through_python("reencode.py", &[schemas], records)
        .iter()
        .map(|l| unhex(l))
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

/// Reads `datums` (written with `schemas/{name}.avsc`) with the previous version of the
/// schema in fastavro: what an existing consumer sees, and the datum it would write with
/// its own schema.
fn read_with_previous_schema(name: &str, datums: &[Vec<u8>]) -> Vec<(serde_json::Value, Vec<u8>)> {
    let root = woostream_tests::repo_root();
    let schemas = [
        root.join(format!("schemas/{name}.avsc")),
        root.join(format!("tests/fixtures/schemas/{name}.v1.avsc")),
    ];
    through_python("old_reader.py", &schemas, datums)
        .iter()
        .map(|l| {
            let (json, datum) = l.split_once('\t').unwrap();
            (serde_json::from_str(json).unwrap(), unhex(datum))
        })
        .collect()
}

/// The previous version of a schema, as released.
fn previous_schema(name: &str) -> apache_avro::Schema {
    let path = woostream_tests::repo_root().join(format!("tests/fixtures/schemas/{name}.v1.avsc"));
    apache_avro::Schema::parse_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Both directions of a compatible evolution for `values`: readers of the previous schema
/// read the new records (fastavro), and woostream reads records written with the previous
/// schema (fastavro writes them), the new fields taking their defaults.
fn assert_compatible<T: Contract + PartialEq + std::fmt::Debug>(
    values: &[T],
    same_in_old: impl Fn(&T, &serde_json::Value),
    defaults: impl Fn(&T) -> T,
) {
    let name = T::SCHEMA_NAME;
    let encoder = Encoder::<T>::new(&Framing::SingleObject);
    let datums: Vec<Vec<u8>> = values
        .iter()
        .map(|v| encoder.encode(v).unwrap()[10..].to_vec())
        .collect();
    let old_view = read_with_previous_schema(name, &datums);
    assert_eq!(old_view.len(), values.len());
    let decoder = Decoder::new();
    decoder.learn(41, previous_schema(name));
    for (v, (old, old_datum)) in values.iter().zip(&old_view) {
        same_in_old(v, old);
        // Backward: a record of the previous schema, read by this build.
        let mut framed = vec![0u8, 0, 0, 0, 41];
        framed.extend(old_datum);
        let back: T = decoder
            .decode(&framed)
            .unwrap_or_else(|e| panic!("{name}: reading a record of the previous schema: {e}"));
        assert_eq!(
            back,
            defaults(v),
            "{name}: the new fields take their defaults"
        );
    }
}

#[test]
fn the_new_fields_are_a_compatible_evolution_old_readers_read_new_records_and_back() {
    let config = Config::default();
    let decoder = Decoder::new();
    let records = sale_records(300, 100, 23);
    let mut orders: Vec<OrderEvent> = records
        .iter()
        .filter(|r| r.topic == config.topics.orders.name)
        .map(|r| decoder.decode(&r.value).unwrap())
        .collect();
    for (i, o) in orders.iter_mut().enumerate().filter(|(i, _)| i % 7 == 0) {
        if let Some(order) = &mut o.order {
            order.customer_note = Some(format!("note {i}: ring twice"));
        }
    }
    assert!(orders
        .iter()
        .any(|o| o.order.as_ref().is_some_and(|o| o.customer_note.is_some())));
    assert_compatible(
        &orders,
        |new, old| {
            assert_eq!(old["order_id"], new.order_id);
            if let Some(o) = &old["order"].as_object() {
                assert!(
                    !o.contains_key("customer_note"),
                    "the old reader does not see it"
                );
            }
        },
        |new| {
            let mut v = new.clone();
            if let Some(o) = &mut v.order {
                o.customer_note = None;
            }
            v
        },
    );

    let keys: Vec<CustomerKey> = records
        .iter()
        .filter(|r| r.topic == config.topics.orders.name)
        .map(|r| decoder.decode(&r.key).unwrap())
        .collect();
    let e = &config.enricher;
    let settings = Settings::from_config(e).unwrap();
    let model = Model::prior(e);
    let mut partition = CustomerPartition::new(0);
    let mut profiles: Vec<CustomerProfile> = Vec::new();
    for (offset, (key, order)) in keys.iter().zip(&orders).enumerate() {
        let out = partition.on_order(key, order, offset as i64, &model, &settings);
        profiles.extend(out.profiles.into_iter().filter_map(|(_, p)| p));
    }
    assert!(profiles
        .iter()
        .any(|p| !p.top_products.is_empty() && p.typical_interval_days.is_some()));
    assert_compatible(
        &profiles,
        |new, old| {
            assert_eq!(old["customer"], new.customer.as_str());
            assert_eq!(old["orders_count"], new.orders_count);
            assert_eq!(old["orders"].as_array().unwrap().len(), new.orders.len());
            assert!(old.get("top_products").is_none());
        },
        |new| {
            let mut v = new.clone();
            for o in &mut v.orders {
                (o.payment_method, o.discounted, o.items) = (None, false, Vec::new());
            }
            v.top_categories.clear();
            v.top_products.clear();
            v.frequent_products.clear();
            v.last_products.clear();
            v.mean_interval_days = None;
            v.typical_interval_days = None;
            v.preferred_payment_method = None;
            v.discount_share = 0.0;
            v.expected_next_purchase_at = None;
            v.replenishment.clear();
            v
        },
    );

    let refs: Vec<&CustomerProfile> = profiles.iter().collect();
    // Milliseconds, as the schema keeps times.
    let now =
        chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis()).unwrap();
    let mut model = woostream_enricher::model::fit::fit_shop("eu", &refs, now, now, e);
    model
        .repurchase_intervals
        .push(woostream_core::contract::enriched::RepurchaseInterval {
            product_id: 93,
            name: Some("Coffee".into()),
            median_days: 30.0,
            customers: 9,
        });
    assert_compatible(
        &[model],
        |new, old| {
            assert_eq!(old["version"], new.version);
            assert!(old.get("repurchase_intervals").is_none());
        },
        |new| {
            let mut v = new.clone();
            v.as_of = None;
            v.repurchase_intervals.clear();
            v
        },
    );
}
