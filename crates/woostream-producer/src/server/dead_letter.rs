//! A signed delivery that is not an event, kept in the ingest dead-letter topic with its raw
//! bytes (sealed), whole or, when Kafka will not take it whole, its start, size and SHA-256.

use chrono::Utc;
use sha2::{Digest, Sha256};
use woostream_core::contract::events::IngestDeadLetter;

use super::accept::NotAnEvent;
use super::{unavailable, Headers, Ingest, Shop};
use crate::answer::Answer;
use crate::personal::{publish_sealed, seal_kept_body, NewKeys};
use crate::publish::PublishError;
use woostream_woo::normalise::Rejection;

/// What a dead letter keeps of a body Kafka would not take whole.
pub(super) const KEPT_PREFIX_BYTES: usize = 64 * 1024;

/// Keeps a signed delivery that is not an event, with its raw bytes (sealed if a key is set).
pub(super) async fn dead_letter(
    ingest: &Ingest,
    h: &Headers,
    shop: &Shop,
    source: &str,
    body: &[u8],
    not_an_event: NotAnEvent,
) -> Answer {
    let NotAnEvent { rejection } = not_an_event;
    let cid = h.correlation_id.as_str();
    let mut published = publish_dead_letter(ingest, h, shop, source, body, &rejection, None).await;
    if matches!(published, Ok(Err(PublishError::Refused(_)))) && body.len() > KEPT_PREFIX_BYTES {
        // Too large even as a dead letter (the topic's limit is below ours): keep its start,
        // its size and its SHA-256, which is what an operator needs to find it in the shop.
        published = publish_dead_letter(
            ingest,
            h,
            shop,
            source,
            body,
            &rejection,
            Some(KEPT_PREFIX_BYTES),
        )
        .await;
    }
    match published {
        Err(answer) => answer,
        Ok(Ok(())) => {
            ingest
                .metrics
                .dead_lettered
                .with_label_values(&[&shop.id, rejection.code.as_str()])
                .inc();
            tracing::warn!(
                correlation_id = cid,
                shop = %shop.id,
                reason_code = rejection.code.as_str(),
                reason = %rejection.reason,
                "Dead-lettered a signed webhook that is not a readable event."
            );
            Answer::DeadLettered {
                code: rejection.code,
                reason: rejection.reason,
            }
        }
        Ok(Err(e)) => unavailable(cid, &e),
    }
}

/// Writes one dead letter, with the whole body or (`cut_to`) its first bytes. The outer error
/// is an answer already made (the record could not be encoded).
pub(super) async fn publish_dead_letter(
    ingest: &Ingest,
    h: &Headers,
    shop: &Shop,
    source: &str,
    body: &[u8],
    rejection: &Rejection,
    cut_to: Option<usize>,
) -> Result<Result<(), PublishError>, Answer> {
    let cid = h.correlation_id.as_str();
    let kept = &body[..cut_to.unwrap_or(body.len()).min(body.len())];
    let reason = match cut_to {
        Some(n) => format!(
            "{} (the body is cut to its first {n} of {} bytes: Kafka would not take it whole)",
            rejection.reason,
            body.len()
        ),
        None => rejection.reason.clone(),
    };
    // Sealed under the person's key when the body shows whose it is (their erasure then
    // reaches it), else under the dead-letter key when one is configured.
    let mut new_keys = NewKeys::default();
    let (body_encryption, stored) = seal_kept_body(
        ingest.sealer.as_ref(),
        ingest.dead_letter_cipher.as_ref(),
        &shop.customers,
        &shop.id,
        kept,
        &mut new_keys,
    );
    let dl = IngestDeadLetter {
        received_at: Utc::now(),
        correlation_id: cid.to_string(),
        shop_id: Some(shop.id.clone()),
        source: Some(source.to_string()),
        wc_topic: h.topic.clone(),
        webhook_id: h.webhook_id,
        delivery_id: h.delivery_id.clone(),
        content_type: h.content_type.clone(),
        reason_code: rejection.code.as_str().to_string(),
        reason,
        body_sha256: hex::encode(Sha256::digest(body)),
        body_encryption: body_encryption.to_string(),
        body: stored,
    };
    let record = match ingest.encoders.dead_letter_record(&dl) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(correlation_id = cid, error = %e, "Could not encode a dead letter.");
            return Err(Answer::DeadLetterFailed);
        }
    };
    Ok(
        publish_sealed(&ingest.publisher, ingest.sealer.as_ref(), new_keys, record)
            .await
            .map(drop),
    )
}
