//! Every role as its own process, as a Kubernetes deployment runs them, each with a
//! configuration that sets only the broker, one shop and what the role must reach (the Slack
//! token, the CRM token) — everything else as shipped — on a real Kafka-protocol broker (Tansu).
//! Each role's `/readyz` is probed from its first moment and must not answer 200 before the
//! role's own condition holds; then one signed webhook travels through all of them to a Slack
//! message and a CRM deal.

use woostream_tests::roles::every_role_carries_a_webhook_to_slack_and_the_crm;
use woostream_tests::Tansu;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_as_shipped_is_ready_only_when_it_is_and_carries_a_webhook_to_slack_and_the_crm()
{
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    every_role_carries_a_webhook_to_slack_and_the_crm(&format!(
        "[kafka]\nbootstrap_servers = \"{}\"",
        tansu.bootstrap
    ))
    .await;
}
