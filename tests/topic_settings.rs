//! Topics a platform team created (`topics.create = false`) are checked at start-up against
//! what woostream's promises need, on Tansu: a profile topic without compaction (which would
//! never forget an erased person) stops the start with the topic, the setting and why.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_with_the_wrong_cleanup_policy_stops_every_role_at_start() {
    let tansu = tokio::task::spawn_blocking(woostream_tests::Tansu::start)
        .await
        .unwrap();
    let mut config = woostream_tests::config(&tansu.bootstrap);
    // The platform team's topics: all as woostream would make them, but the profiles deleted
    // by age instead of compacted.
    let admin: AdminClient<DefaultClientContext> =
        woostream_core::kafka::client_config(&config.kafka, &tansu.bootstrap)
            .create()
            .unwrap();
    let new: Vec<NewTopic> = config
        .topics
        .all()
        .iter()
        .map(|(key, t)| {
            let policy = if *key == "profiles" {
                "delete"
            } else {
                t.cleanup_policy.as_str()
            };
            NewTopic::new(&t.name, 6, TopicReplication::Fixed(1)).set("cleanup.policy", policy)
        })
        .collect();
    admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap();
    config.topics.create = false;
    let e = woostream_core::kafka::first_contact(&config, &tansu.bootstrap, false)
        .await
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("woostream.customer-profiles (topics.profiles) has cleanup.policy=delete")
            && e.contains("never removed"),
        "{e}"
    );
    // Made right (deleted and created again compacted), the same start goes through.
    let profiles = config.topics.profiles.name.clone();
    admin
        .delete_topics(&[&profiles], &AdminOptions::new())
        .await
        .unwrap();
    admin
        .create_topics(
            &[NewTopic::new(&profiles, 6, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact")],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    woostream_core::kafka::first_contact(&config, &tansu.bootstrap, false)
        .await
        .unwrap();
}
