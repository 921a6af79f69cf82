//! Runs with security on (`--secure`, issue 19): the nodes require SASL/SCRAM and check ACLs;
//! the workload authenticates as `writer`, a metadata-log user granted what it needs, and an
//! intruder (`intruder`, authenticated and allowed only to describe the run's topic, and an
//! anonymous client) keeps trying to produce to, read and delete the run's topic. (Describe lets
//! the intruder's producer find the partition leaders, so its produce reaches the produce check.)
//!
//! Invariant A1 (this simulator's, beside CHECKLISTS.md): **no unauthorized operation takes
//! effect.** Every intruder attempt must fail; an attempt that succeeds is an A1 violation. The
//! attempts that reach a node are refused with a definite authorization (or authentication)
//! error; the others fail on the faults of the run (counted, and noted in the timeline). The
//! planted bug `skip-produce-acl-check` (produce skips its write check) is caught by A1.
//!
//! With `--kafka` too, the Kafka workload logs in as `writer` (SCRAM-SHA-256 over SaslHandshake
//! and SaslAuthenticate, `workload::kafka::Login`), and every intruder round also produces to and
//! fetches from a node's Kafka listener, in turn as the intruder, as the intruder with a wrong
//! password, and anonymously without any login (`kafka_attempts`). A1 holds there too: the
//! node refuses (an authorization or SASL error code, or it closes the connection of a client
//! that did not log in); a Kafka produce acknowledged or a Kafka fetch that returns records is a
//! violation. The planted bug `kafka-fetch-skips-acl-check` (the Kafka listener's Fetch skips
//! its read check) is caught by A1 there.

use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::NodeHandle;
use odradek_client::scram::Mechanism;
use odradek_client::wire::proto::{Acl, ErrorCode};
use odradek_client::{
    Admin, ClientError, ClusterConfig, ClusterSession, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord,
};
use odradek_server::auth::{AuthSettings, Secret};

use crate::cluster::SimCluster;
use crate::config::TOPIC;
use crate::workload::kafka;

/// The configured super user that sets the run up.
const ADMIN: (&str, &str) = ("admin", "admin-secret");
/// The nodes' own user (relays).
const NODE_USER: (&str, &str) = ("node", "node-secret");
/// The workload's user: a metadata-log user with ACLs.
pub const WRITER: (&str, &str) = ("writer", "writer-secret");
/// Authenticated, allowed to describe the run's topic only.
const INTRUDER: (&str, &str) = ("intruder", "intruder-secret");
/// Pause between two rounds of intruder attempts.
const INTRUDER_INTERVAL: Duration = Duration::from_millis(700);
/// Bound on one intruder attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The intruder's values, far from the producers' (index × 10⁶ + i).
const INTRUDER_VALUE_BASE: u64 = 900_000_000;

/// The `[auth]` section of every node of a secure run.
pub fn server_settings() -> AuthSettings {
    AuthSettings {
        sasl: true,
        authorization: true,
        super_users: [format!("User:{}", ADMIN.0), format!("User:{}", NODE_USER.0)].into(),
        users: [ADMIN, NODE_USER].into_iter().map(|(name, password)| (name.to_string(), Secret(password.to_string()))).collect(),
        inter_node_user: Some(NODE_USER.0.to_string()),
    }
}

fn client_config(user: Option<(&str, &str)>) -> ClusterConfig {
    let config = ClusterConfig { operation_timeout: ATTEMPT_TIMEOUT, ..ClusterConfig::default() };
    match user {
        Some((name, password)) => config.with_sasl(Mechanism::Sha512, name, password),
        None => config,
    }
}

fn admin_as(cluster: &SimCluster, user: Option<(&str, &str)>) -> Result<Admin, ClientError> {
    let bootstrap = cluster.bootstrap();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    Ok(Admin::with_cluster(ClusterSession::new(&addresses, client_config(user))?))
}

fn allow(principal: &str, resource_type: &str, name: &str) -> Acl {
    let mut acl = Acl::new();
    acl.principal = principal.to_string();
    acl.resource_type = resource_type.to_string();
    acl.resource_name = name.to_string();
    acl.pattern = "literal".to_string();
    acl.operation = "all".to_string();
    acl.permission = "allow".to_string();
    acl
}

/// Most attempts (100 ms apart) at each setup step while the cluster comes up.
const SETUP_ATTEMPTS_MAX: u32 = 600;

/// As the administrator: the users `writer` and `intruder`, and the writer's ACLs (everything on
/// every topic, describe on the cluster). Retries while the cluster comes up.
pub async fn setup(client: &NodeHandle, cluster: Arc<SimCluster>) {
    client
        .spawn(async move {
            let admin = admin_as(&cluster, Some(ADMIN)).expect("admin");
            // The writer logs in with SCRAM-SHA-256 (`SimCluster::client_config`), the intruder
            // with SCRAM-SHA-512: both mechanisms run.
            for ((name, password), mechanism) in [(WRITER, Mechanism::Sha256), (INTRUDER, Mechanism::Sha512)] {
                retry(&format!("create user {name}"), || {
                    let admin = admin.clone();
                    async move { admin.upsert_user(name, password, mechanism, 4096).await }
                })
                .await;
            }
            let writer = format!("User:{}", WRITER.0);
            let mut describe = allow(&writer, "cluster", "odradek-cluster");
            describe.operation = "describe".to_string();
            let mut intruder_describe = allow(&format!("User:{}", INTRUDER.0), "topic", TOPIC);
            intruder_describe.operation = "describe".to_string();
            for acl in [allow(&writer, "topic", "*"), describe, intruder_describe] {
                retry("grant the writer and the intruder", || {
                    let (admin, acl) = (admin.clone(), acl.clone());
                    async move { admin.create_acl(acl).await }
                })
                .await;
            }
            // Every node must know the writer before the workload logs in anywhere: a node that
            // has not applied the user yet refuses it as unknown (definite, as Kafka's brokers do).
            for address in cluster.bootstrap() {
                let bootstrap = cluster.bootstrap();
                let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
                let writer = Admin::with_cluster(ClusterSession::new(&addresses, cluster.client_config()).expect("writer"));
                retry(&format!("the writer logs in at {address}"), || {
                    let (writer, address) = (writer.clone(), address.clone());
                    async move {
                        match writer.describe_node(&address).await {
                            Err(error) if error.code() == Some(ErrorCode::AUTHENTICATION_FAILED) => {
                                Err(ClientError::server(ErrorCode::LEADER_NOT_AVAILABLE, error.to_string()))
                            }
                            outcome => outcome.map(drop),
                        }
                    }
                })
                .await;
            }
            cluster.note("security: users writer and intruder created; writer granted all on every topic, intruder describe on t");
        })
        .await
        .expect("security setup task");
}

async fn retry<F: std::future::Future<Output = Result<(), ClientError>>>(what: &str, mut step: impl FnMut() -> F) {
    for _ in 0..SETUP_ATTEMPTS_MAX {
        match step().await {
            Ok(()) => return,
            Err(error) if error.is_retriable() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(error) => panic!("{what}: {error}"),
        }
    }
    panic!("{what}: no success after {SETUP_ATTEMPTS_MAX} attempts");
}

/// What the intruder's attempts came to.
#[derive(Clone, Debug, Default)]
pub struct IntruderOutcome {
    /// Refused with a definite authentication or authorization error.
    pub refused: u64,
    /// Failed otherwise (a fault of the run: no node reached, a timeout).
    pub inconclusive: u64,
    /// A1 violations: attempts that succeeded.
    pub violations: Vec<String>,
}

/// Runs the intruder until `duration` has passed.
pub fn start_intruder(client: &NodeHandle, cluster: Arc<SimCluster>, duration: Duration) -> tokio::task::JoinHandle<IntruderOutcome> {
    client.spawn(async move {
        let deadline = tokio::time::Instant::now() + duration;
        let mut outcome = IntruderOutcome::default();
        let mut round = 0u64;
        while tokio::time::Instant::now() < deadline {
            // Anonymous and authenticated-without-ACL in turn.
            let user = [Some(INTRUDER), None][(round % 2) as usize];
            let who = user.map_or("User:ANONYMOUS".to_string(), |(name, _)| format!("User:{name}"));
            let value = INTRUDER_VALUE_BASE + round;
            judge(&mut outcome, &who, "produce", produce(&cluster, user, value).await);
            judge(&mut outcome, &who, "read", read(&cluster, user).await);
            judge(&mut outcome, &who, "delete topic", delete(&cluster, user).await);
            if cluster.kafka {
                kafka_attempts(&cluster, &mut outcome, round, value).await;
            }
            round += 1;
            tokio::time::sleep(INTRUDER_INTERVAL).await;
        }
        cluster.note(format!(
            "security: intruder attempts refused {}, inconclusive {}, succeeded {}",
            outcome.refused,
            outcome.inconclusive,
            outcome.violations.len()
        ));
        outcome
    })
}

/// With the Kafka listeners on (`--kafka`): a produce and a fetch over a node's Kafka listener
/// as, in turn, the intruder (logged in, describe only), the intruder with a wrong password, and
/// an anonymous client that sends them without any login; the node changes every third round.
async fn kafka_attempts(cluster: &SimCluster, outcome: &mut IntruderOutcome, round: u64, value: u64) {
    let bootstrap = cluster.kafka_bootstrap();
    let address = bootstrap[(round / 3) as usize % bootstrap.len()];
    let login =
        |password: &str| kafka::Login { mechanism: Mechanism::Sha512, user: INTRUDER.0.to_string(), password: password.to_string() };
    let (who, login) = match round % 3 {
        0 => (format!("User:{}", INTRUDER.0), Some(login(INTRUDER.1))),
        1 => (format!("User:{} (wrong password)", INTRUDER.0), Some(login("not-the-password"))),
        _ => ("User:ANONYMOUS (no login)".to_string(), None),
    };
    for (what, produce) in [("Kafka produce", Some(value)), ("Kafka fetch", None)] {
        match kafka::intruder_attempt(address, login.as_ref(), produce).await {
            kafka::Attempt::Succeeded => outcome.violations.push(format!("A1: {who}'s {what} of topic {TOPIC} at {address} took effect")),
            kafka::Attempt::Refused => outcome.refused += 1,
            kafka::Attempt::Inconclusive => outcome.inconclusive += 1,
        }
    }
}

fn judge(outcome: &mut IntruderOutcome, who: &str, what: &str, result: Result<(), ClientError>) {
    match result {
        Ok(()) => outcome.violations.push(format!("A1: {who}'s {what} of topic {TOPIC} took effect")),
        Err(error)
            if error.is_definite()
                && matches!(
                    error.code(),
                    Some(
                        ErrorCode::AUTHENTICATION_FAILED | ErrorCode::TOPIC_AUTHORIZATION_FAILED | ErrorCode::CLUSTER_AUTHORIZATION_FAILED
                    )
                ) =>
        {
            outcome.refused += 1
        }
        Err(_) => outcome.inconclusive += 1,
    }
}

async fn produce(cluster: &SimCluster, user: Option<(&str, &str)>, value: u64) -> Result<(), ClientError> {
    let bootstrap = cluster.bootstrap();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let config = ProducerConfig {
        cluster: client_config(user),
        idempotence: false,
        request_timeout: ATTEMPT_TIMEOUT,
        delivery_timeout: ATTEMPT_TIMEOUT,
        ..ProducerConfig::default()
    };
    let attempt = async {
        let producer = Producer::new(&addresses, config).await?;
        let delivery = producer.send(ProducerRecord::new(TOPIC, value.to_string()).partition(0)).await?;
        let outcome = delivery.await.map(drop);
        let _ = producer.close().await;
        outcome
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT * 2, attempt).await.unwrap_or(Err(ClientError::Timeout { timeout_ms: 10_000 }))
}

/// A read: the partition's start (list offsets, which describe allows) and a poll; it took
/// effect when the poll returned records. (An empty poll read nothing: a consumer may answer
/// one while its fetches fail, seed 164 of `--secure` swarm; counted as inconclusive.)
async fn read(cluster: &SimCluster, user: Option<(&str, &str)>) -> Result<(), ClientError> {
    let bootstrap = cluster.bootstrap();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let attempt = async {
        let mut consumer = Consumer::new(&addresses, ConsumerConfig { cluster: client_config(user), ..ConsumerConfig::default() })?;
        consumer.assign(vec![(TOPIC.to_string(), 0)])?;
        consumer.seek(TOPIC, 0, Offset::Beginning).await?;
        let records = consumer.poll(Duration::from_millis(200)).await?;
        if records.is_empty() {
            return Err(ClientError::Timeout { timeout_ms: 200 });
        }
        Ok(())
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT * 2, attempt).await.unwrap_or(Err(ClientError::Timeout { timeout_ms: 10_000 }))
}

async fn delete(cluster: &SimCluster, user: Option<(&str, &str)>) -> Result<(), ClientError> {
    let attempt = async { admin_as(cluster, user)?.delete_topic(TOPIC).await };
    tokio::time::timeout(ATTEMPT_TIMEOUT * 2, attempt).await.unwrap_or(Err(ClientError::Timeout { timeout_ms: 10_000 }))
}
