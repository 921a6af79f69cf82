//! Authentication and authorization against a real 3-node cluster (issue 19): with `--auth
//! scram` and `--authorization on`, an unauthenticated client and an authenticated one without
//! the ACL can neither produce, consume, create nor delete, each with a definite error that
//! names the principal; with the ACLs they can; a wrong password is refused; deleting a user
//! ends its access, on connections already open too. A plain cluster stays open (no security
//! settings: every request as before). A node joins a secured cluster (issue 15) by logging in
//! as the nodes' own user.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::time::Duration;

use odradek_client::scram::Mechanism;
use odradek_client::wire::proto::{Acl, ErrorCode};
use odradek_client::{
    Admin, ClientError, ClusterConfig, ClusterSession, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord,
    TopicConfig,
};

use common::ProcessCluster;

const SETTINGS: &str = r#"
[auth]
sasl = true
authorization = true
super_users = ["User:admin", "User:node"]
inter_node_user = "node"
[auth.users]
admin = "admin-secret"
node = "node-secret"
"#;

fn addresses(cluster: &ProcessCluster) -> Vec<String> {
    cluster.bootstrap().split(',').map(String::from).collect()
}

fn config(user: Option<(&str, &str)>) -> ClusterConfig {
    let mut config = ClusterConfig { operation_timeout: Duration::from_secs(10), ..ClusterConfig::default() };
    if let Some((name, password)) = user {
        // alice's credential is SCRAM-SHA-256, everyone else's SCRAM-SHA-512: both are exercised.
        let mechanism = if name == "alice" { Mechanism::Sha256 } else { Mechanism::Sha512 };
        config = config.with_sasl(mechanism, name, password);
    }
    config
}

fn admin(cluster: &ProcessCluster, user: Option<(&str, &str)>) -> Admin {
    let addresses = addresses(cluster);
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    Admin::with_cluster(ClusterSession::new(&addresses, config(user)).unwrap())
}

fn acl(principal: &str, resource_type: &str, name: &str, operation: &str) -> Acl {
    let mut acl = Acl::new();
    acl.principal = principal.into();
    acl.resource_type = resource_type.into();
    acl.resource_name = name.into();
    acl.pattern = "literal".into();
    acl.operation = operation.into();
    acl.permission = "allow".into();
    acl
}

/// Retries `operation` while the cluster settles (no controller, metadata catching up).
async fn settled<T>(what: &str, mut operation: impl AsyncFnMut() -> Result<T, ClientError>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match operation().await {
            Ok(value) => return value,
            Err(error) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => panic!("{what}: {error}"),
        }
    }
}

/// The error of an operation that must be refused definitely with `code`.
fn assert_refused<T: std::fmt::Debug>(outcome: Result<T, ClientError>, code: ErrorCode, principal: &str, what: &str) {
    let error = outcome.expect_err(what);
    assert!(error.is_definite(), "{what}: {error} must be definite");
    let text = error.to_string();
    assert!(
        matches!(&error, ClientError::Server { code: got, .. } if *got == code) || text.contains(&format!("{code:?}")),
        "{what}: {error}"
    );
    assert!(text.contains(principal), "{what}: {error} must name {principal}");
}

async fn produce_one(cluster: &ProcessCluster, user: Option<(&str, &str)>, topic: &str) -> Result<Option<u64>, ClientError> {
    let addresses = addresses(cluster);
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    // Not idempotent: InitProducerId's own check would refuse first, and produce's is the one tested.
    let config =
        ProducerConfig { cluster: config(user), idempotence: false, delivery_timeout: Duration::from_secs(5), ..ProducerConfig::default() };
    let producer = Producer::new(&addresses, config).await?;
    let delivery = producer.send(ProducerRecord::new(topic, "value").key("k")).await?;
    let outcome = delivery.await.map(|metadata| metadata.offset);
    let _ = producer.close().await;
    outcome
}

async fn consume_one(cluster: &ProcessCluster, user: Option<(&str, &str)>, topic: &str) -> Result<usize, ClientError> {
    let addresses = addresses(cluster);
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let mut consumer = Consumer::new(&addresses, ConsumerConfig { cluster: config(user), ..ConsumerConfig::default() })?;
    consumer.assign(vec![(topic.to_string(), 0)])?;
    consumer.seek(topic, 0, Offset::Beginning).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let records = consumer.poll(Duration::from_millis(500)).await?;
        if !records.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(records.len());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_authenticated_principals_with_the_acl_produce_consume_create_and_delete() {
    let cluster = ProcessCluster::start_with_settings(3, SETTINGS);
    let root = admin(&cluster, Some(("admin", "admin-secret")));
    settled("create topic as a super user", async || root.create_topic("orders", 1, 3, TopicConfig::default()).await).await;
    settled("create alice", async || root.upsert_user("alice", "alice-pw", Mechanism::Sha256, 4096).await).await;
    settled("create bob", async || root.upsert_user("bob", "bob-pw", Mechanism::Sha512, 4096).await).await;
    let users = root.list_users().await.unwrap();
    assert_eq!(users.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(), ["alice", "bob"], "{users:?}");

    let alice = Some(("alice", "alice-pw"));
    let bob = Some(("bob", "bob-pw"));
    // Unauthenticated: refused at the first request (the handshake has no SASL).
    assert_refused(produce_one(&cluster, None, "orders").await, ErrorCode::AUTHENTICATION_FAILED, "ANONYMOUS", "anonymous produce");
    assert_refused(consume_one(&cluster, None, "orders").await, ErrorCode::AUTHENTICATION_FAILED, "ANONYMOUS", "anonymous consume");
    assert_refused(
        admin(&cluster, None).create_topic("t2", 1, 1, TopicConfig::default()).await,
        ErrorCode::AUTHENTICATION_FAILED,
        "ANONYMOUS",
        "anonymous create",
    );
    // A wrong password: refused at the handshake, definitely.
    let wrong = produce_one(&cluster, Some(("alice", "nope")), "orders").await.expect_err("wrong password");
    assert_eq!(wrong.code(), Some(ErrorCode::AUTHENTICATION_FAILED), "{wrong}");
    assert!(!wrong.is_retriable());

    // Authenticated, no ACL: refused by authorization, naming the principal.
    assert_refused(produce_one(&cluster, alice, "orders").await, ErrorCode::TOPIC_AUTHORIZATION_FAILED, "User:alice", "produce");
    assert_refused(consume_one(&cluster, alice, "orders").await, ErrorCode::TOPIC_AUTHORIZATION_FAILED, "User:alice", "consume");
    let as_alice = admin(&cluster, alice);
    assert_refused(
        as_alice.create_topic("t2", 1, 1, TopicConfig::default()).await,
        ErrorCode::TOPIC_AUTHORIZATION_FAILED,
        "User:alice",
        "create",
    );
    assert_refused(as_alice.delete_topic("orders").await, ErrorCode::TOPIC_AUTHORIZATION_FAILED, "User:alice", "delete");
    assert_refused(
        as_alice.create_acl(acl("User:alice", "topic", "orders", "all")).await,
        ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
        "User:alice",
        "grant itself",
    );
    assert!(as_alice.list_topics().await.unwrap().is_empty(), "metadata lists only describable topics");

    // With the ACLs: allowed.
    for operation in ["write", "read", "create", "delete"] {
        settled("grant", async || root.create_acl(acl("User:alice", "topic", "orders", operation)).await).await;
    }
    settled("grant", async || root.create_acl(acl("User:alice", "topic", "t2", "create")).await).await;
    assert_eq!(root.list_acls().await.unwrap().len(), 5);
    produce_one(&cluster, alice, "orders").await.expect("produce with the write ACL");
    assert_eq!(consume_one(&cluster, alice, "orders").await.expect("consume with the read ACL"), 1);
    assert_eq!(as_alice.list_topics().await.unwrap(), ["orders"]);
    settled("create with the ACL", async || as_alice.create_topic("t2", 1, 1, TopicConfig::default()).await).await;
    // Bob still has nothing.
    assert_refused(produce_one(&cluster, bob, "orders").await, ErrorCode::TOPIC_AUTHORIZATION_FAILED, "User:bob", "bob produce");

    // A deny wins over the allow.
    let mut deny = acl("User:alice", "topic", "orders", "write");
    deny.permission = "deny".into();
    settled("deny", async || root.create_acl(deny.clone()).await).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // every node applies the new ACL
    let denied = produce_one(&cluster, alice, "orders").await.expect_err("denied");
    assert!(denied.to_string().contains("a deny ACL matches"), "{denied}");
    settled("undeny", async || root.delete_acl(deny.clone()).await).await;

    // Deleting a user ends its access, on a connection opened before too.
    let open = admin(&cluster, alice);
    // t2 is not listed: create does not imply describe.
    assert_eq!(open.list_topics().await.unwrap(), ["orders"]);
    settled("delete alice", async || root.delete_user("alice").await).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = open.list_topics().await.expect_err("a deleted user's open connection");
    assert!(after.to_string().contains("AUTHENTICATION_FAILED") || after.code() == Some(ErrorCode::AUTHENTICATION_FAILED), "{after}");
    let again = produce_one(&cluster, alice, "orders").await.expect_err("a deleted user logs in");
    assert_eq!(again.code(), Some(ErrorCode::AUTHENTICATION_FAILED), "{again}");
    assert_refused(as_alice.delete_topic("orders").await.map(drop), ErrorCode::AUTHENTICATION_FAILED, "alice", "deleted user deletes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_security_settings_stays_open() {
    let cluster = ProcessCluster::start(3);
    let anonymous = admin(&cluster, None);
    settled("create", async || anonymous.create_topic("open", 1, 3, TopicConfig::default()).await).await;
    settled("produce", async || produce_one(&cluster, None, "open").await).await;
    assert_eq!(consume_one(&cluster, None, "open").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_a_secured_cluster_as_the_nodes_own_user() {
    let mut cluster = ProcessCluster::start_with_settings(3, SETTINGS);
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "admin:admin-secret\nnode:node-secret\n").unwrap();
    let seed = cluster.client_addr(1);
    let users = users.to_str().unwrap().to_string();
    let flags: Vec<String> = ["--join", &seed, "--auth", "scram", "--authorization", "on", "--users-file", &users]
        .into_iter()
        .chain(["--super-user", "User:admin", "--super-user", "User:node", "--inter-node-user", "node"])
        .map(String::from)
        .collect();
    let four = cluster.add_joining(&flags);
    cluster.restart(four);
    // Node 4 listens only once its join was recorded (a refused join ends the process).
    let root = admin(&cluster, Some(("admin", "admin-secret")));
    let two = cluster.client_addr(2);
    common::wait_until("node 2 lists node 4 as a broker", 30, || async {
        root.describe_node(&two).await.is_ok_and(|described| described.brokers.iter().any(|broker| broker.node_id == four))
    })
    .await;
}
