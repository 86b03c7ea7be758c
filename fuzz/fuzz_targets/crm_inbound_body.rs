//! What a signed HubSpot request carries, read as the CRM inbound reads it: the list of events,
//! which of them concern the shop, the customer a contact's id property names, and the update
//! one change makes to a customer as the shop has it. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use woostream_producer::crm_inbound::change::{
    customer_of, decide, millis, relevant, CrmChange, HubSpotEvent,
};

fuzz_target!(|data: &[u8]| {
    let Ok(events) = serde_json::from_slice::<Vec<HubSpotEvent>>(data) else {
        return;
    };
    let fields = woostream_core::config::crm::CrmInbound::default().field_map();
    let allowed: Vec<String> = woostream_core::config::crm::DEFAULT_ALLOWED_SOURCES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let shop = serde_json::json!({
        "id": 7, "first_name": "A", "billing": {"phone": "1"},
        "meta_data": [{"key": "_woostream_crm_applied", "value": "{\"billing.phone\": 5}"}],
        "date_modified_gmt": "2026-01-01T00:00:00"
    });
    for e in events {
        let _ = customer_of(&e.property_name.clone().unwrap_or_default(), "eu");
        let Ok(field) = relevant(&e, &fields, Some("4711"), &allowed) else {
            continue;
        };
        let change = CrmChange {
            change_id: format!("{}:{}", e.portal_id, e.event_id),
            shop_id: "eu".into(),
            customer_id: 7,
            contact_id: e.object_id.to_string(),
            property: e.property_name.clone().unwrap_or_default(),
            field: field.to_string(),
            value: String::new(),
            occurred_at: millis(e.occurred_at),
            received_at: millis(e.occurred_at),
            change_source: e.change_source.clone(),
        };
        let value = e.property_value.clone().unwrap_or_default();
        let _ = decide(&change, &value, &shop, |_| "fp".to_string());
    }
});
