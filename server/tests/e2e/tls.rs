//! TLS against real processes (issue 19, "Security to build"): certificates from `odradek tls
//! init`, nodes with TLS on the client listener and mutual TLS on peer links.
//! - a client over TLS creates, produces (acks=all) and reads every record back (L5);
//! - a plaintext client, and a TLS client that does not trust the cluster CA, get a definite
//!   error at once (no 30 s of retries), and so does a client without the certificate a mutual
//!   TLS listener requires;
//! - a process without a node certificate (none, or the CA's client certificate claiming to be
//!   node 2) cannot join the peer port: node 1 refuses and logs it, node 2's live connection is
//!   not replaced, and acknowledged writes go on;
//! - certificates rotated while producing: new connections get the new certificate, live ones
//!   go on, a node restarted on its new certificate rejoins, and every acknowledged record is
//!   read back;
//! - a node joins (`--join`, issue 15) a cluster whose client listeners speak mutual TLS: the
//!   join's client trusts the cluster CA and presents the node's peer certificate (f0d4f0a);
//!   the join as a default plaintext client, or over TLS without a certificate, is refused.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use odradek_client::tls::{ClientTls, Pem};
use odradek_client::wire::proto::{Acl, ErrorCode};
use odradek_client::{
    Admin, ClientError, ClusterConfig, ClusterSession, Consumer, ConsumerConfig, Offset, OffsetQuery, Producer, ProducerConfig,
    ProducerRecord, TopicConfig,
};
use odradek_consensus::transport::{TcpTransport, Transport};
use odradek_server::config::TlsSettings;

use common::ProcessCluster;

/// Every node: TLS on the client listener and mutual TLS on peer links, with the files `odradek
/// tls init` wrote in `dir`.
fn tls_settings(dir: &Path, client_ca: bool) -> String {
    let file = |name: &str| format!("{:?}", dir.join(name).to_str().unwrap());
    let mut text = format!(
        "[tls]\ncert = {}\nkey = {}\npeer_cert = {}\npeer_key = {}\npeer_ca = {}\n",
        file("node-{id}.pem"),
        file("node-{id}.key"),
        file("node-{id}.pem"),
        file("node-{id}.key"),
        file("ca.pem")
    );
    if client_ca {
        text.push_str(&format!("client_ca = {}\n", file("ca.pem")));
    }
    text
}

/// Runs `odradek tls ARGS`.
fn odradek_tls(args: &[&str]) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_odradek")).arg("tls").args(args).output().expect("run odradek tls");
    assert!(output.status.success(), "odradek tls {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn certificates(dir: &Path, nodes: &str) -> PathBuf {
    odradek_tls(&["init", dir.to_str().unwrap(), "--nodes", nodes]);
    dir.to_path_buf()
}

fn client_config(tls: Option<ClientTls>) -> ClusterConfig {
    let mut config = ClusterConfig { operation_timeout: Duration::from_secs(20), ..ClusterConfig::default() };
    config.connection.tls = tls;
    config
}

fn trusting(dir: &Path) -> ClientTls {
    ClientTls::new(Pem::File(dir.join("ca.pem")))
}

fn with_identity(dir: &Path) -> ClientTls {
    let mut tls = trusting(dir);
    tls.identity = Some((Pem::File(dir.join("client.pem")), Pem::File(dir.join("client.key"))));
    tls
}

fn admin(cluster: &ProcessCluster, config: ClusterConfig) -> Admin {
    let bootstrap = cluster.bootstrap();
    let addresses: Vec<&str> = bootstrap.split(',').collect();
    Admin::with_cluster(ClusterSession::new(&addresses, config).unwrap())
}

async fn create_topic(admin: &Admin, topic: &str, partitions: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match admin.create_topic(topic, partitions, 3, TopicConfig::default()).await {
            Ok(()) => break,
            Err(error) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => panic!("create topic: {error}"),
        }
    }
    loop {
        if let Ok(described) = admin.describe_topic(topic).await {
            if described.partitions.iter().all(|p| p.leader != 0 && p.leader_term != 0) {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leaders for {topic}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Produces `value-<n>` records (acks=all) until `stop`; returns the acknowledged values.
async fn produce_until(
    cluster: String,
    config: ClusterConfig,
    topic: &'static str,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
) -> BTreeSet<String> {
    let addresses: Vec<&str> = cluster.split(',').collect();
    let producer_config = ProducerConfig { cluster: config, request_timeout: Duration::from_secs(10), ..ProducerConfig::default() };
    let producer = Producer::new(&addresses, producer_config).await.expect("producer");
    let mut acked = BTreeSet::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut deliveries = Vec::new();
        for _ in 0..20 {
            let value = format!("value-{n:07}");
            n += 1;
            deliveries.push((value.clone(), producer.send(ProducerRecord::new(topic, value)).await.expect("send queues")));
        }
        for (value, delivery) in deliveries {
            if delivery.await.is_ok() {
                acked.insert(value);
                acks.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    producer.close().await.expect("close");
    acked
}

/// Every record of `topic` (all partitions), read from the beginning over `config`.
async fn read_all(cluster: &ProcessCluster, config: ClusterConfig, topic: &str, partitions: u32) -> BTreeSet<String> {
    let admin = admin(cluster, config.clone());
    let bootstrap = cluster.bootstrap();
    let addresses: Vec<&str> = bootstrap.split(',').collect();
    let mut consumer = Consumer::new(&addresses, ConsumerConfig { cluster: config, ..ConsumerConfig::default() }).unwrap();
    consumer.assign((0..partitions).map(|p| (topic.to_string(), p)).collect()).unwrap();
    let mut ends = BTreeMap::new();
    for partition in 0..partitions {
        consumer.seek(topic, partition, Offset::Beginning).await.unwrap();
        ends.insert(partition, admin.list_offsets(topic, partition, OffsetQuery::Latest).await.unwrap().offset);
    }
    let mut values = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (0..partitions).any(|p| consumer.position(topic, p).unwrap_or(0) < ends[&p]) {
        assert!(tokio::time::Instant::now() < deadline, "reading back took over 60 s");
        for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            values.insert(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
        }
    }
    values
}

/// A refusal that is definite, not retried, says `expected`, and comes at once.
async fn assert_refused(cluster: &ProcessCluster, config: ClusterConfig, expected: &str) {
    let started = tokio::time::Instant::now();
    let error = admin(cluster, config).list_topics().await.expect_err("the connection must be refused");
    assert!(matches!(error, ClientError::Refused { .. }), "{error:?}");
    assert!(error.is_definite() && !error.is_retriable(), "{error}");
    assert!(error.to_string().contains(expected), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "refused only after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_produces_and_consumes_and_plaintext_or_untrusting_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(&dir.path().join("certs"), "1,2,3");
    let strangers = certificates(&dir.path().join("strangers"), "1");
    let cluster = ProcessCluster::start_with_settings(3, &tls_settings(&certs, false));
    let tls = client_config(Some(trusting(&certs)));
    create_topic(&admin(&cluster, tls.clone()), "secure", 2).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let producing = tokio::spawn(produce_until(cluster.bootstrap(), tls.clone(), "secure", stop.clone(), acks.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = producing.await.unwrap();
    assert!(acked.len() >= 100, "only {} records acknowledged over TLS in 2 s", acked.len());
    let read = read_all(&cluster, tls, "secure", 2).await;
    let lost: Vec<&String> = acked.difference(&read).collect();
    assert!(lost.is_empty(), "L5: {} acknowledged records missing, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);

    assert_refused(&cluster, client_config(None), "this listener speaks TLS only").await;
    assert_refused(&cluster, client_config(Some(trusting(&strangers))), "TLS handshake failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_listener_serves_only_clients_with_a_certificate_of_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(&dir.path().join("certs"), "1");
    let strangers = certificates(&dir.path().join("strangers"), "1");
    let cluster = ProcessCluster::start_with_settings(1, &tls_settings(&certs, true));
    let topics = admin(&cluster, client_config(Some(with_identity(&certs)))).list_topics().await.expect("a client with a certificate");
    assert!(topics.is_empty(), "{topics:?}");
    assert_refused(&cluster, client_config(Some(trusting(&certs))), "refused this TLS connection").await;
    // A certificate of another CA: trusted server, untrusted client.
    let mut foreign = trusting(&certs);
    foreign.identity = Some((Pem::File(strangers.join("client.pem")), Pem::File(strangers.join("client.key"))));
    assert_refused(&cluster, client_config(Some(foreign)), "refused this TLS connection").await;
}

/// The peer-link TLS of a process holding `cert`/`key` of the cluster CA (an impostor when the
/// certificate does not name the node it claims to be).
fn impostor_tls(certs: &Path, name: &str) -> Option<Arc<dyn odradek_consensus::transport::PeerTls>> {
    let settings = TlsSettings {
        peer_cert: Some(certs.join(format!("{name}.pem"))),
        peer_key: Some(certs.join(format!("{name}.key"))),
        peer_ca: Some(certs.join("ca.pem")),
        ..TlsSettings::default()
    };
    odradek_server::tls::peers(&settings).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_without_a_node_certificate_cannot_join_the_peer_port_or_disturb_replication() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(&dir.path().join("certs"), "1,2,3");
    let cluster = ProcessCluster::start_with_settings(3, &tls_settings(&certs, false));
    let tls = client_config(Some(trusting(&certs)));
    create_topic(&admin(&cluster, tls.clone()), "guarded", 3).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let producing = tokio::spawn(produce_until(cluster.bootstrap(), tls.clone(), "guarded", stop.clone(), acks.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Impostors dial node 1's peer port claiming to be node 2, and keep redialing: one with the
    // CA's client certificate (valid, but not node 2's), one with no TLS at all.
    let peer_one: std::net::SocketAddr = format!("127.0.0.1:{}", cluster.nodes[0].peer_port).parse().unwrap();
    let mut impostors = Vec::new();
    for tls in [impostor_tls(&certs, "client"), None] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (transport, _inbound) = TcpTransport::start_with_tls(2, 0, listener, BTreeMap::from([(1, peer_one)]), tls).unwrap();
        impostors.push(transport);
    }
    let acks_before = acks.load(Ordering::Relaxed);
    let raft_message = || {
        let mut message = raft::prelude::Message::default();
        message.set_msg_type(raft::prelude::MessageType::MsgHeartbeat);
        message.from = 2;
        message.to = 1;
        message
    };
    for _ in 0..30 {
        for impostor in &impostors {
            impostor.send(1, vec![(0, raft_message())]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acks_during = acks.load(Ordering::Relaxed) - acks_before;
    for impostor in &impostors {
        let stats = impostor.stats();
        assert_eq!((stats.connects, stats.messages_sent), (0, 0), "an impostor got through the peer port");
        impostor.shutdown().await;
    }
    stop.store(true, Ordering::Relaxed);
    let acked = producing.await.unwrap();
    assert!(acks_during >= 50, "acknowledged writes stalled while impostors dialed: {acks_during} in 3 s");

    let log = cluster.log(1);
    assert!(
        log.contains("handshake claims node 2 but the peer's certificate names Some(\"client\")"),
        "no identity refusal logged:\n{log}"
    );
    assert!(log.contains("TLS: received corrupt message"), "no TLS refusal of the plaintext impostor logged:\n{log}");

    let read = read_all(&cluster, tls, "guarded", 3).await;
    let lost: Vec<&String> = acked.difference(&read).collect();
    assert!(lost.is_empty(), "L5: {} acknowledged records missing, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
}

/// The certificate a TLS server at `address` presents now (DER).
async fn presented_certificate(address: &str, tls: &ClientTls) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(tls.config().unwrap());
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let stream = connector.connect(tls.server_name_for(address).unwrap(), stream).await.unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn certificate_in(path: &Path) -> Vec<u8> {
    odradek_client::tls::certificates(&Pem::File(path.to_path_buf())).unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotated_while_producing_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(&dir.path().join("certs"), "1,2,3");
    let mut cluster = ProcessCluster::start_with_settings(3, &tls_settings(&certs, false));
    let tls = client_config(Some(trusting(&certs)));
    create_topic(&admin(&cluster, tls.clone()), "rotating", 3).await;
    let old = certificate_in(&certs.join("node-1.pem"));
    assert_eq!(presented_certificate(&cluster.client_addr(1), &trusting(&certs)).await, old);

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let producing = tokio::spawn(produce_until(cluster.bootstrap(), tls.clone(), "rotating", stop.clone(), acks.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    for node in ["1", "2", "3"] {
        tokio::task::block_in_place(|| odradek_tls(&["issue", certs.to_str().unwrap(), "--node", node]));
    }
    let new = certificate_in(&certs.join("node-1.pem"));
    assert_ne!(new, old);
    // Files are looked at most once a second: a new connection sees the new certificate soon.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while presented_certificate(&cluster.client_addr(1), &trusting(&certs)).await != new {
        assert!(tokio::time::Instant::now() < deadline, "node 1 still presents its old certificate 10 s after rotation");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A node restarted on its new certificate dials and is dialed by peers on theirs.
    tokio::task::block_in_place(|| {
        cluster.kill(3);
        cluster.restart(3);
    });
    let acks_after_restart = acks.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = producing.await.unwrap();
    assert!(acks.load(Ordering::Relaxed) > acks_after_restart + 50, "writes stalled after the rotation");

    let read = read_all(&cluster, tls, "rotating", 3).await;
    let lost: Vec<&String> = acked.difference(&read).collect();
    assert!(lost.is_empty(), "L5: {} acknowledged records missing, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    let log = cluster.log(1);
    assert!(log.contains("TLS files changed: new connections use them"), "node 1 did not log the reload:\n{log}");
}

/// Mutual TLS names the connection's principal (issue 19): with a client CA, SASL and ACLs on, a
/// client's certificate makes it `User:<the certificate's name>` with no SASL exchange; without
/// an ACL it is refused definitely by name, with the ACL it produces, and a super user's
/// certificate may grant that ACL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_the_principal_acls_judge() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(&dir.path().join("certs"), "1");
    odradek_tls(&["issue", certs.to_str().unwrap(), "--client", "admin"]);
    let settings = format!(
        "{}\n[auth]\nsasl = true\nauthorization = true\nsuper_users = [\"User:admin\", \"User:node\"]\n\
         inter_node_user = \"node\"\n[auth.users]\nnode = \"node-secret\"\n",
        tls_settings(&certs, true)
    );
    let cluster = ProcessCluster::start_with_settings(1, &settings);
    let as_certificate = |name: &str| {
        let mut tls = trusting(&certs);
        tls.identity = Some((Pem::File(certs.join(format!("{name}.pem"))), Pem::File(certs.join(format!("{name}.key")))));
        client_config(Some(tls))
    };
    let root = admin(&cluster, as_certificate("admin"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(error) = root.create_topic("orders", 1, 1, TopicConfig::default()).await {
        assert!(error.is_retriable() && tokio::time::Instant::now() < deadline, "create topic as a super user's certificate: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let produce = async |config: ClusterConfig| {
        let bootstrap = cluster.bootstrap();
        let addresses: Vec<&str> = bootstrap.split(',').collect();
        let config =
            ProducerConfig { cluster: config, idempotence: false, delivery_timeout: Duration::from_secs(5), ..ProducerConfig::default() };
        let producer = Producer::new(&addresses, config).await?;
        let outcome = producer.send(ProducerRecord::new("orders", "value").key("k")).await?.await;
        let _ = producer.close().await;
        outcome
    };
    // The producer may report the refusal as the server's code or inside a delivery error.
    let unauthorized = |error: &ClientError| {
        error.code() == Some(ErrorCode::TOPIC_AUTHORIZATION_FAILED) || error.to_string().contains("TOPIC_AUTHORIZATION_FAILED")
    };
    let refused = produce(as_certificate("client")).await.expect_err("no ACL for User:client");
    assert!(refused.is_definite(), "{refused}");
    assert!(unauthorized(&refused), "{refused}");
    assert!(refused.to_string().contains("User:client"), "the refusal names the certificate's principal: {refused}");

    let mut grant = Acl::new();
    (grant.principal, grant.resource_type, grant.resource_name) = ("User:client".into(), "topic".into(), "orders".into());
    (grant.pattern, grant.operation, grant.permission) = ("literal".into(), "write".into(), "allow".into());
    root.create_acl(grant).await.expect("a super user's certificate grants the ACL");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match produce(as_certificate("client")).await {
            Ok(metadata) => {
                assert_eq!(metadata.offset, Some(0), "the first record of the topic");
                break;
            }
            // The ACL reaches the node through the metadata log: allowed once applied.
            Err(error) if unauthorized(&error) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => panic!("produce with the ACL: {error}"),
        }
    }
}

/// Relays speak TLS too (issue 19, defect 1 under TLS): a node that does not host a partition
/// learns its leader and term from the replicas over their TLS client listeners, as the node
/// (its peer certificate). With the relay in plaintext, nodes outside a partition would report
/// it without a term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_a_partition_learns_its_leader_over_tls() {
    use odradek_client::connection::{Connection, ConnectionConfig};
    use odradek_client::wire::proto::{MetadataRequest, Request_oneof_body as Body};

    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(&dir.path().join("certs"), "1,2,3");
    let cluster = ProcessCluster::start_with_settings(3, &tls_settings(&certs, false));
    let root = admin(&cluster, client_config(Some(trusting(&certs))));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(error) = root.create_topic("spread", 3, 1, TopicConfig::default()).await {
        assert!(error.is_retriable() && tokio::time::Instant::now() < deadline, "create topic: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in 1..=3 {
        let address = cluster.client_addr(id);
        let config = ConnectionConfig { tls: Some(trusting(&certs)), ..ConnectionConfig::default() };
        let connection = Connection::connect(&address, "relay-test", config).await.expect("a TLS connection to one node");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut request = MetadataRequest::new();
            request.topics.push("spread".into());
            let answer = connection.request(Body::metadata(request)).await.expect("metadata");
            let topic = answer.get_metadata().topics.first().cloned().unwrap_or_default();
            let known = !topic.partitions.is_empty() && topic.partitions.iter().all(|p| p.leader != 0 && p.leader_term != 0);
            if known {
                for partition in &topic.partitions {
                    assert_eq!(partition.leader, partition.replicas[0], "node {id} names the only replica as leader: {partition:?}");
                }
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "node {id} still reports a partition without a leader and term: {topic:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A node joins a cluster whose client listeners speak mutual TLS (issue 15). What it proves:
/// the joining process reaches the seed's client listener over TLS, trusting the cluster CA and
/// presenting its own node certificate (`join::join_client_config`, f0d4f0a); the cluster
/// records it; it then learns the metadata log and takes replicas over the peer links' mutual
/// TLS. Without that client configuration the join cannot happen: the same JoinCluster request
/// from a default (plaintext) client, or a TLS client without a certificate, is refused at once
/// (checked first), and with join_client_config's TLS part removed node 4 never starts listening
/// (`odradek server` keeps asking, then exits: this test fails at node 4's start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_a_mutual_tls_cluster_with_its_node_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(&dir.path().join("certs"), "1,2,3,4");
    let mut cluster = ProcessCluster::start_with_settings(3, &tls_settings(&certs, true));
    let seed = cluster.client_addr(1);

    let mut request = odradek_client::wire::proto::JoinClusterRequest::new();
    request.node_id = 4;
    request.incarnation = 1;
    request.peer_address = "127.0.0.1:1".into();
    request.client_address = "127.0.0.1:2".into();
    for (config, expected) in
        [(client_config(None), "this listener speaks TLS only"), (client_config(Some(trusting(&certs))), "refused this TLS connection")]
    {
        let error = Admin::with_cluster(ClusterSession::new(&[seed.as_str()], config).unwrap())
            .join_cluster(request.clone())
            .await
            .expect_err("a join without the node's TLS identity must be refused");
        assert!(error.is_definite() && error.to_string().contains(expected), "{expected}: {error}");
    }

    let ca = certs.join("ca.pem");
    let flags: Vec<String> =
        ["--join", &seed, "--tls-dir", certs.to_str().unwrap(), "--tls-client-ca", ca.to_str().unwrap()].map(String::from).to_vec();
    let four = cluster.add_joining(&flags);
    assert_eq!(four, 4);
    // Node 4 listens only once the cluster recorded its join (a refused one ends the process).
    cluster.restart(four);
    let tls = client_config(Some(with_identity(&certs)));
    let admin = admin(&cluster, tls.clone());
    let (two, four_address) = (cluster.client_addr(2), cluster.client_addr(four));
    common::wait_until("node 2 lists node 4, and node 4 applied the metadata as a learner", 60, || async {
        let listed = admin.describe_node(&two).await.is_ok_and(|d| d.brokers.iter().any(|broker| broker.node_id == 4));
        listed && admin.describe_node(&four_address).await.is_ok_and(|d| d.controller_learners.contains(&4) && d.brokers.len() == 4)
    })
    .await;
    // Replicas reach it over the peer links' mutual TLS: a new topic's placement spreads 4x3
    // replicas over the 4 brokers, so node 4 hosts some.
    create_topic(&admin, "joined", 4).await;
    common::wait_until("node 4 hosts a replica of topic joined with a leader known", 60, || async {
        admin
            .describe_node(&four_address)
            .await
            .is_ok_and(|d| d.partitions.iter().any(|partition| partition.topic == "joined" && partition.leader != 0))
    })
    .await;
}
