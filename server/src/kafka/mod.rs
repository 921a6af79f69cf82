//! The Kafka listener (issue 16): Apache Kafka's wire protocol on a second port
//! (`--kafka-listen`), so Kafka clients (kcat, librdkafka, kafka-python, Java) produce to and
//! consume from the same log as the native clients, with the same guarantees.
//!
//! - [`codec`]: frames to requests and back with the `kafka-protocol` crate's codecs, and the
//!   API versions this listener speaks;
//! - [`handlers`]: each Kafka request translated into the native requests of
//!   [`crate::request`], answered by the same handlers (so every check, every guarantee and
//!   every planted bug is shared), and the answers gathered back into Kafka's shape;
//! - [`groups`]: the consumer-group APIs on the coordinator of [`crate::group`], classic and
//!   KIP-848;
//! - [`topic_admin`]: CreatePartitions, DescribeConfigs, (Incremental)AlterConfigs and
//!   DeleteGroups over the native topic-change and group requests;
//! - [`topic_ids`]: Kafka topic ids for our named topics;
//! - [`errors`]: our definite/indefinite outcomes as Kafka error codes.
//!
//! Invariants of a connection:
//! - answers go out in request order (Kafka clients match them by position as much as by
//!   correlation id): each request gets a slot in an ordered queue when it is read, and the
//!   writer sends slot by slot; a produce with acks=0 gets no slot (Kafka sends nothing back);
//! - a produce is queued to raft before the next request is read (pipelined batches of one
//!   producer keep their order), as on the native listener; and at most
//!   [`PRODUCE_BYTES_IN_FLIGHT_MAX`](crate::net::PRODUCE_BYTES_IN_FLIGHT_MAX) bytes of a
//!   connection's produces are unanswered at once ([`ProduceWindow`], shared with the native
//!   listener; the next request is read when earlier ones are answered): one fast producer
//!   waits instead of pushing its partition's leader past raft's uncommitted-bytes limit, where
//!   a produce would be refused (LEADER_NOT_AVAILABLE) and retried behind the later ones that
//!   were not, out of order (librdkafka's 0041_fetch_max_bytes). Kafka serves a connection's
//!   requests one at a time;
//! - a connection's OffsetCommits and OffsetFetches take effect in request order (each starts
//!   once the one before it completed), as Kafka serves them;
//! - input this listener does not speak (unknown API key, unsupported version, a frame that does
//!   not decode, a frame above the limit, a truncated frame) closes the connection, as Kafka
//!   does; other connections are not affected. ApiVersions at a too-new version is answered
//!   (error 35, v0 body) so that newer clients can negotiate down.
//!
//! TLS (Kafka's SSL and SASL_SSL security protocols): with the node's client TLS configured
//! (`[tls] cert`/`key`, `client_ca` for client certificates) this listener speaks only TLS, with
//! the same reloading configuration as the client listener: a node never serves plaintext
//! beside TLS. A connection whose first byte is not a TLS handshake record is closed (Kafka
//! has no plaintext words for it either); the handshake counts against `handshake_timeout_ms`.
//! A verified client certificate makes the connection `User:<its first DNS name>` (Kafka's SSL
//! principal); otherwise SASL/SCRAM runs inside TLS as it does in plaintext.
//!
//! Limits are the native listener's settings (`connections_max`, `connections_per_address_max`,
//! `connection_requests_max`, `connection_idle_timeout_ms`, `request_bytes_in_flight_max`),
//! counted separately for this listener.

pub mod codec;
pub mod errors;
pub mod groups;
pub mod handlers;
pub mod sasl;
pub mod topic_admin;
pub mod topic_ids;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use odradek_client::tls::Stream;
use odradek_client::wire::FRAME_BYTES_MAX;
use odradek_consensus::NodeId;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use self::codec::Decoded;
use crate::auth::Principal;
use crate::context::NodeContext;
use crate::net::session::Session;
use crate::net::{accept_tls, Admission, Admitted, FrameReader, ProduceWindow, RequestBudget, TlsAccepted};
use crate::shutdown::Shutdown;
use crate::tls::ListenerTls;

/// Where Kafka clients reach each node: the brokers of a Metadata answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaBrokers {
    pub addresses: BTreeMap<NodeId, SocketAddr>,
}

impl KafkaBrokers {
    /// The members' advertised Kafka addresses, with this node's own as bound (`bound`: the
    /// real port when configured with port 0).
    pub fn new(config: &crate::config::ServerConfig, bound: SocketAddr) -> KafkaBrokers {
        let mut addresses: BTreeMap<NodeId, SocketAddr> = config.nodes.iter().filter_map(|m| m.kafka.map(|k| (m.id, k))).collect();
        let advertised = config.me().kafka.filter(|address| address.port() != 0).unwrap_or(bound);
        addresses.insert(config.id, advertised);
        KafkaBrokers { addresses }
    }

    /// The brokers to advertise now: the registered Kafka addresses of the metadata (nodes that
    /// joined the running cluster, and bootstrap members whose address this node's
    /// configuration lacks), over the configured ones; this node's own as bound.
    pub fn current(&self, context: &NodeContext) -> BTreeMap<NodeId, SocketAddr> {
        let mut addresses = self.addresses.clone();
        let me = context.state.node_id;
        let removed = context.is_removed();
        let state = context.state.lock();
        for (&node, broker) in state.meta.brokers() {
            if let Some(address) = broker.kafka_address.parse().ok().filter(|_| node != me) {
                addresses.insert(node, address);
            }
        }
        // A removed node lists the others only, so Kafka clients move to them (`request::removed`).
        for node in state.meta.removed() {
            addresses.remove(node);
        }
        if removed {
            addresses.remove(&me);
        }
        addresses
    }
}

/// Accepts Kafka connections until `shutdown` turns true; over TLS when `tls` is set (the
/// client listener's configuration: Kafka's SSL, or SASL_SSL with `[auth] sasl`).
pub async fn serve(
    listener: TcpListener,
    tls: Option<ListenerTls>,
    context: Arc<NodeContext>,
    brokers: KafkaBrokers,
    mut shutdown: Shutdown,
) {
    let admission = Admission::new(context.config.connections_max, context.config.connections_per_address_max);
    let budget = RequestBudget::new(context.config.request_bytes_in_flight_max);
    let brokers = Arc::new(brokers);
    while let Some((stream, peer, admitted)) = crate::net::accept(&listener, &admission, &mut shutdown, "Kafka").await {
        let slot = match admitted {
            Ok(slot) => slot,
            Err(refusal) => {
                // Kafka has no greeting to refuse in: the connection is closed.
                tracing::warn!(%peer, ?refusal, "refusing a Kafka connection: too many open");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = context.metrics.connection_opened("kafka");
        let (context, shutdown, budget, brokers) = (context.clone(), shutdown.clone(), budget.clone(), brokers.clone());
        let Some(tls) = tls.clone() else {
            tokio::spawn(async move {
                serve_connection(stream, None, context, brokers, shutdown, budget).await;
                drop((slot, connection));
            });
            continue;
        };
        tokio::spawn(async move {
            let deadline = context.config.handshake_timeout();
            match tokio::time::timeout(deadline, accept_tls(stream, &tls)).await {
                Ok(TlsAccepted::Tls(stream, principal)) => serve_connection(stream, principal, context, brokers, shutdown, budget).await,
                // Kafka's SSL listener has no plaintext words for a plaintext client: the
                // handshake fails and the connection is closed.
                Ok(TlsAccepted::Plaintext(stream)) => {
                    tracing::debug!(%peer, "closing a plaintext connection on the TLS Kafka listener");
                    drop(stream);
                }
                Ok(TlsAccepted::Failed) => {}
                Err(_) => tracing::debug!(%peer, ?deadline, "closing a Kafka connection: no TLS handshake in time"),
            }
            drop((slot, connection));
        });
    }
}

/// One answer slot: the encoded frame, or nothing (acks=0).
type Slot = oneshot::Receiver<Option<Bytes>>;

/// Writes answers in request order; ends when the reader is done and every slot is filled, or
/// the peer stops reading.
async fn write_responses<W: tokio::io::AsyncWrite + Unpin>(mut writer: W, mut slots: mpsc::Receiver<Slot>) {
    while let Some(slot) = slots.recv().await {
        let Ok(Some(frame)) = slot.await else { continue };
        // The flush is what sends under madsim (its streams buffer until flushed); on a real
        // socket it is free.
        if let Err(error) = async {
            writer.write_all(&frame).await?;
            writer.flush().await
        }
        .await
        {
            tracing::debug!(%error, "Kafka connection write failed");
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// One connection (see the module comment). `principal` is the TLS principal (the client
/// certificate's first DNS name) when there is one: the session is then `User:<that name>`, as
/// Kafka's SSL principal, with no SASL exchange.
async fn serve_connection<S: Stream>(
    stream: S,
    principal: Option<String>,
    context: Arc<NodeContext>,
    brokers: Arc<KafkaBrokers>,
    mut shutdown: Shutdown,
    budget: RequestBudget,
) {
    // Who this connection acts as: its certificate's user, else anonymous until a SASL exchange
    // succeeds (see `sasl`).
    let mut session = match principal.as_deref().map(Session::from_certificate) {
        None => Session::default(),
        Some(Ok(session)) => session,
        Some(Err(error)) => {
            tracing::warn!(%error, "refusing a Kafka client certificate whose name is not a principal");
            return;
        }
    };
    let (reader, writer) = tokio::io::split(stream);
    let frame_bytes_max = FRAME_BYTES_MAX.min(budget.bytes_max());
    let mut frames = FrameReader::new(reader, budget);
    let requests_max = context.config.connection_requests_max;
    let (slots, queue) = mpsc::channel::<Slot>(requests_max);
    let writer_task = tokio::spawn(write_responses(writer, queue));
    let in_flight = Arc::new(Semaphore::new(requests_max));
    let idle = context.config.connection_idle_timeout();
    let mut deadline = Instant::now() + idle;
    let mut mechanism: Option<String> = None;
    // The last OffsetCommit/OffsetFetch of this connection: the next waits for it (see in_order).
    let mut offsets_before: Option<oneshot::Receiver<()>> = None;
    // The bytes of this connection's unanswered produces (PRODUCE_BYTES_IN_FLIGHT_MAX).
    let produce_window = ProduceWindow::new();
    loop {
        let frame = tokio::select! {
            biased;
            _ = shutdown.stopping() => break,
            frame = frames.next(frame_bytes_max) => frame,
            _ = tokio::time::sleep_until(deadline) => {
                if in_flight.available_permits() < requests_max {
                    deadline = Instant::now() + idle;
                    continue;
                }
                tracing::debug!(?idle, "closing an idle Kafka connection");
                break;
            }
        };
        let (body, admitted) = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(%error, "closing a Kafka connection");
                break;
            }
        };
        deadline = Instant::now() + idle;
        let decoded = match codec::decode(body) {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::debug!(%error, "closing a Kafka connection on a request it cannot serve");
                break;
            }
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        let (filled, slot) = oneshot::channel();
        match decoded {
            Decoded::ApiVersionsTooNew { correlation_id } => {
                let _ = filled.send(Some(codec::api_versions_too_new(correlation_id)));
                if slots.send(slot).await.is_err() {
                    break;
                }
            }
            Decoded::Request { header, api_key, version, request } if sasl::is_sasl(api_key) => {
                let (response, close) =
                    sasl::step(&context, &mut session, &mut mechanism, u64::from(header.correlation_id as u32), *request);
                let frame = codec::encode(api_key, version, header.correlation_id, &response).ok();
                let _ = filled.send(frame);
                if slots.send(slot).await.is_err() || close {
                    break;
                }
            }
            Decoded::Request { header, api_key, version, request } => {
                let id = u64::from(header.correlation_id as u32);
                // With SASL required, nothing but ApiVersions and the exchange before it succeeds;
                // and a user deleted (or its password changed) since ends the connection's access.
                // Kafka closes such a connection.
                if api_key != ApiKey::ApiVersions {
                    if let Some((refusal, _)) = session.refusal(&context, id, None) {
                        tracing::debug!(?api_key, message = %refusal.error_message, "closing a Kafka connection: not authenticated");
                        break;
                    }
                }
                let principal = session.principal().clone();
                // Kafka sends nothing back for a produce with acks=0: it gets no slot.
                let answered = !matches!(&*request, RequestKind::Produce(produce) if produce.acks == 0);
                // A produce waits here, before it is queued, while earlier ones hold too many
                // bytes: nothing after it is read meanwhile, so the order is kept.
                let produce_held = match &*request {
                    RequestKind::Produce(produce) => match produce_window.admit(produce_bytes(produce), &mut shutdown).await {
                        Some(held) => Some(held),
                        None => break,
                    },
                    _ => None,
                };
                let started = Instant::now();
                let client_id = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
                let answer = start(&context, &brokers, principal, header.correlation_id, version, client_id, *request).await;
                let answer = match produce_held {
                    Some(held) => holding(held, answer),
                    None => answer,
                };
                let answer = if matches!(api_key, ApiKey::OffsetCommit | ApiKey::OffsetFetch) {
                    let (done, next) = oneshot::channel::<()>();
                    in_order(offsets_before.replace(next), answer, done)
                } else {
                    answer
                };
                let answer = metered(context.clone(), api_key, started, answer);
                if answered && slots.send(slot).await.is_err() {
                    break;
                }
                let correlation_id = header.correlation_id;
                tokio::spawn(finish(answer, api_key, version, correlation_id, filled, (permit, admitted)));
            }
        }
    }
    drop(slots);
    let _ = writer_task.await;
}

/// The future of one request's answer (`None`: no answer is sent).
type Answer = Pin<Box<dyn Future<Output = Option<ResponseKind>> + Send>>;

/// `answer`, run only once the previous one of its chain (`before`) completed; `done` tells the
/// next. A connection's OffsetCommits and OffsetFetches go through one chain, so they take effect
/// in request order as on Kafka (which serves a connection's requests one at a time): without
/// it two pipelined async commits could be proposed in either order and the older offset stay
/// committed (librdkafka's 0030_offset_commit), or a fetch overtake a commit sent before it.
fn in_order(before: Option<oneshot::Receiver<()>>, answer: Answer, done: oneshot::Sender<()>) -> Answer {
    Box::pin(async move {
        if let Some(before) = before {
            // Completed or dropped (its connection's task ended): either way it is done.
            let _ = before.await;
        }
        let response = answer.await;
        drop(done);
        response
    })
}

/// The bytes of a produce's record batches, as the connection's [`ProduceWindow`] counts them.
fn produce_bytes(produce: &kafka_protocol::messages::ProduceRequest) -> usize {
    produce.topic_data.iter().flat_map(|t| &t.partition_data).filter_map(|p| p.records.as_ref()).map(|records| records.len()).sum()
}

/// `answer`, with `held` released once it resolves.
fn holding(held: OwnedSemaphorePermit, answer: Answer) -> Answer {
    Box::pin(async move {
        let response = answer.await;
        drop(held);
        response
    })
}

/// `answer`, counted in the metrics when it resolves.
fn metered(context: Arc<NodeContext>, api_key: ApiKey, started: Instant, answer: Answer) -> Answer {
    Box::pin(async move {
        let response = answer.await;
        context.metrics.observe_request("kafka", &format!("{api_key:?}"), started.elapsed());
        response
    })
}

/// Waits for an answer, encodes it and fills its slot; the permit and the budget's bytes are
/// held until then.
async fn finish(
    answer: Answer,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    filled: oneshot::Sender<Option<Bytes>>,
    held: (OwnedSemaphorePermit, Admitted),
) {
    let frame = answer.await.and_then(|response| match codec::encode(api_key, version, correlation_id, &response) {
        Ok(frame) => Some(frame),
        Err(error) => {
            // A response field this version cannot carry: a bug in the translation.
            tracing::error!(?api_key, version, %error, "a Kafka response did not encode");
            None
        }
    });
    let _ = filled.send(frame);
    drop(held);
}

/// Starts one request: a produce is queued now (before the next request is read); every other
/// request runs off the reader.
async fn start(
    context: &Arc<NodeContext>,
    brokers: &Arc<KafkaBrokers>,
    principal: Principal,
    correlation_id: i32,
    version: i16,
    client_id: String,
    request: RequestKind,
) -> Answer {
    let id = u64::from(correlation_id as u32);
    if let RequestKind::Produce(body) = request {
        return handlers::produce(context, &principal, id, body).await;
    }
    let (context, brokers) = (context.clone(), brokers.clone());
    Box::pin(async move {
        let response = match request {
            RequestKind::ApiVersions(_) => handlers::api_versions_response(),
            RequestKind::Metadata(body) => handlers::metadata(&context, &principal, &brokers, id, version, body).await,
            RequestKind::Fetch(body) => handlers::fetch(&context, &principal, id, body).await,
            RequestKind::ListOffsets(body) => handlers::list_offsets(&context, &principal, id, body).await,
            RequestKind::CreateTopics(body) => handlers::create_topics(&context, &principal, id, body).await,
            RequestKind::DeleteTopics(body) => handlers::delete_topics(&context, &principal, id, body).await,
            RequestKind::InitProducerId(body) => handlers::init_producer_id(&context, &principal, id, body).await,
            RequestKind::FindCoordinator(body) => handlers::find_coordinator(&context, &principal, &brokers, id, version, body).await,
            RequestKind::CreatePartitions(body) => topic_admin::create_partitions(&context, &principal, id, body).await,
            RequestKind::DescribeConfigs(body) => topic_admin::describe_configs(&context, &principal, id, body).await,
            RequestKind::IncrementalAlterConfigs(body) => topic_admin::incremental_alter_configs(&context, &principal, id, body).await,
            RequestKind::AlterConfigs(body) => topic_admin::alter_configs(&context, &principal, id, body).await,
            RequestKind::DeleteGroups(body) => topic_admin::delete_groups(&context, &principal, id, body).await,
            RequestKind::DeleteRecords(body) => topic_admin::delete_records(&context, &principal, id, body).await,
            request if groups::serves(&request) => groups::handle(&context, &principal, id, version, client_id, request).await,
            other => unreachable!("codec::decode admits only served APIs, not {other:?}"),
        };
        Some(response)
    })
}
