//! The client listener: one task per connection reading frames, handlers running concurrently,
//! one writer task per connection sending answers in completion order (clients match them by
//! request id).
//!
//! Bad input never takes the node down: an oversized frame is answered `FRAME_TOO_LARGE` and the
//! connection closed (its next frame boundary is unknowable without reading the body); a body
//! that is not a protobuf `Request` is answered `MALFORMED_REQUEST` and closed; a well-formed
//! request of an unknown kind (a newer client) is answered `UNKNOWN_REQUEST` and the connection
//! stays open. The first request must be a `Hello` naming a version this node speaks.
//!
//! Limits, so that no client can take the node from the others (issue 19): connections open at
//! once and per IP address ([`admission`]); a handshake deadline (`handshake_timeout_ms` to send
//! the Hello) and an idle timeout (`connection_idle_timeout_ms` without a whole request while
//! nothing is in flight), after which the connection is closed. Frames are read cancel-safely
//! ([`frames`]) so the loop can wait on those deadlines beside the socket. The bytes of requests
//! in flight on all connections together stay within `request_bytes_in_flight_max` ([`budget`]):
//! a frame's body is read only once the budget admits it, and counted until its request is done.
//! A connection's unanswered produces hold at most [`PRODUCE_BYTES_IN_FLIGHT_MAX`] bytes of
//! record batches ([`ProduceWindow`], shared with the Kafka listener): a produce that does not
//! fit waits before it is queued, and nothing after it is read meanwhile, so one client
//! pipelining large batches cannot push a partition's leader past raft's uncommitted limit
//! (whose refusals would leave holes in the pipeline, later batches taken after earlier ones
//! were refused).
//!
//! TLS (issue 19): with a certificate configured the listener speaks only TLS. The first byte
//! tells a TLS client (a handshake record) from a plaintext one, which is answered with a
//! plaintext `HELLO_REQUIRED` frame saying so and closed; the TLS handshake counts against the
//! handshake deadline. Connections then run the same protocol over the TLS stream, each handed
//! its TLS principal (the client certificate's first DNS name, when one was presented) for the
//! layers that decide permissions.
//! Who the connection is ([`session`]): anonymous until a SASL/SCRAM exchange names a user;
//! with `[auth] sasl` on, nothing but that exchange is served before it. Every request is then
//! handled as the session's principal, which the handlers authorize ([`crate::request::authorize`]).

mod admission;
mod budget;
mod frames;
mod produce_window;
pub mod session;

use std::sync::Arc;

use bytes::Bytes;
use odradek_client::tls::{principal, Rewound, Stream, TLS_HANDSHAKE_RECORD};
use odradek_client::wire::proto::{ErrorCode, HelloResponse, Request, Request_oneof_body as Body, Response};
use odradek_client::wire::{
    decode_request, error_response, write_frame, FrameError, FRAME_BYTES_MAX, PROTOCOL_VERSION, PROTOCOL_VERSION_GROUPS,
    PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_SECURITY,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use admission::{Admission, ConnectionSlot, Refusal};
pub use budget::{Admitted, RequestBudget};
pub use frames::FrameReader;
pub use produce_window::{ProduceWindow, PRODUCE_BYTES_IN_FLIGHT_MAX};
pub use session::Session;

use crate::auth::Principal;
use crate::context::NodeContext;
use crate::request;
use crate::shutdown::Shutdown;
use crate::tls::ListenerTls;

/// Accepts client connections until `shutdown` turns true; over TLS when `tls` is set.
pub async fn serve(listener: TcpListener, tls: Option<ListenerTls>, context: Arc<NodeContext>, mut shutdown: Shutdown) {
    let admission = Admission::new(context.config.connections_max, context.config.connections_per_address_max);
    let budget = RequestBudget::new(context.config.request_bytes_in_flight_max);
    while let Some((stream, peer, admitted)) = accept(&listener, &admission, &mut shutdown, "client").await {
        let slot = match admitted {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::warn!(%peer, ?refusal, "refusing a client connection: too many open");
                tokio::spawn(refuse(stream, refusal));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = context.metrics.connection_opened("native");
        let (context, shutdown, budget) = (context.clone(), shutdown.clone(), budget.clone());
        let Some(tls) = tls.clone() else {
            tokio::spawn(async move {
                serve_connection(stream, None, context, shutdown, budget).await;
                drop((slot, connection));
            });
            continue;
        };
        tokio::spawn(async move {
            let deadline = context.config.handshake_timeout();
            match tokio::time::timeout(deadline, accept_tls(stream, &tls)).await {
                Ok(TlsAccepted::Tls(stream, principal)) => serve_connection(stream, principal, context, shutdown, budget).await,
                Ok(TlsAccepted::Plaintext(stream)) => refuse_plaintext(stream).await,
                Ok(TlsAccepted::Failed) => {}
                Err(_) => tracing::debug!(%peer, ?deadline, "closing a client connection: no TLS handshake in time"),
            }
            drop((slot, connection));
        });
    }
}

/// The next connection on `listener` (of the `what` listener) with its admission decision, or
/// None once `shutdown` turns true. A failed accept (out of file descriptors, say) is logged and
/// retried after a short pause, so the loop never spins.
pub(crate) async fn accept(
    listener: &TcpListener,
    admission: &Admission,
    shutdown: &mut Shutdown,
    what: &str,
) -> Option<(TcpStream, std::net::SocketAddr, Result<ConnectionSlot, Refusal>)> {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.stopping() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => return Some((stream, peer, admission.admit(peer.ip()))),
            Err(error) => {
                tracing::warn!(%error, listener = what, "accepting a connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Tells a refused client why (as the answer to its Hello, request id 0) and closes. Bounded:
/// one small frame, given at most `REFUSAL_WRITE_TIMEOUT` (a fresh socket's buffer takes it at
/// once), so refused connections cannot pile up tasks.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let message = match refusal {
        Refusal::NodeFull { limit } => format!("this node has its most client connections open ({limit}); closing"),
        Refusal::AddressFull { limit } => format!("your address has its most connections to this node open ({limit}); closing"),
    };
    let response = error_response(0, ErrorCode::TOO_MANY_CONNECTIONS, message);
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        write_frame(&mut stream, &response).await?;
        stream.shutdown().await
    })
    .await;
}

/// What a new connection on a TLS listener turned out to be.
pub(crate) enum TlsAccepted<S> {
    /// A TLS client: the stream after the handshake, and its TLS principal (the client
    /// certificate's first DNS name, when one was presented).
    Tls(S, Option<String>),
    /// A plaintext client (its first byte is not a TLS handshake record, and was consumed): each
    /// listener tells it in its own protocol, or just closes.
    Plaintext(TcpStream),
    /// The peer closed before a byte, or the handshake failed (logged).
    Failed,
}

/// The TLS side of a new connection (shared by the client and the Kafka listeners).
pub(crate) async fn accept_tls(mut stream: TcpStream, tls: &ListenerTls) -> TlsAccepted<impl Stream> {
    let mut first = [0u8; 1];
    match stream.read(&mut first).await {
        Ok(1) => {}
        _ => return TlsAccepted::Failed,
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        return TlsAccepted::Plaintext(stream);
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    let stream = match acceptor.accept(Rewound::new(first.to_vec(), stream)).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::info!(%error, "client TLS handshake failed");
            return TlsAccepted::Failed;
        }
    };
    let principal = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).and_then(|certificate| principal(certificate));
    TlsAccepted::Tls(stream, principal)
}

/// Tells a plaintext client on the TLS client listener, in plaintext, to connect with TLS, and
/// closes.
async fn refuse_plaintext(mut stream: TcpStream) {
    let message = "this listener speaks TLS only: connect with TLS (odradek --tls-ca CA.pem)";
    tracing::debug!("closing a plaintext client connection on a TLS listener");
    let response = error_response(0, ErrorCode::HELLO_REQUIRED, message);
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        write_frame(&mut stream, &response).await?;
        stream.shutdown().await
    })
    .await;
}

/// Longest a refused connection may take to accept its one-frame answer.
const REFUSAL_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// An answer for a connection's writer, with the stage trace of a traced produce.
struct Outgoing {
    response: Response,
    trace: Option<Box<ProduceTrace>>,
}

impl From<Response> for Outgoing {
    fn from(response: Response) -> Outgoing {
        Outgoing { response, trace: None }
    }
}

/// One produce request's path with `trace_stages` on: the connection's own stamps and the
/// leader driver's (module `odradek_consensus::stages`), reported once its answer is written.
struct ProduceTrace {
    group: odradek_consensus::GroupId,
    index: u64,
    received: Instant,
    queued: Instant,
    driver: odradek_consensus::stages::LeaderStamps,
    woken: Instant,
}

impl ProduceTrace {
    /// Logs the request's stages (microseconds) as one `odradek_stages` line; the stages the
    /// driver did not stamp (a trace dropped from a full book) are reported as missing.
    fn report(&self, written: Instant) {
        let d = &self.driver;
        let (Some(handed), Some(appended), Some(sent), Some(synced), Some(committed), Some(applied)) =
            (d.handed, d.written, d.sent, d.synced, d.committed, d.applied)
        else {
            tracing::info!(target: "odradek_stages", role = "leader", group = self.group, index = self.index, "stages incomplete");
            return;
        };
        let us = |from: Instant, to: Instant| to.saturating_duration_since(from).as_micros() as u64;
        // The quorum's answer: a follower's accepting response (one that cannot come from the
        // leader's own fsync is enough for RF 3); absent when the leader alone is a quorum.
        let acked = d.acked.unwrap_or(sent);
        tracing::info!(
            target: "odradek_stages",
            role = "leader",
            group = self.group,
            index = self.index,
            admit_us = us(self.received, self.queued),
            to_driver_us = us(self.queued, handed),
            send_us = us(handed, sent),
            append_us = us(sent, appended),
            fsync_us = us(appended, synced),
            quorum_us = us(sent, acked),
            commit_us = us(synced.max(acked), committed),
            apply_us = us(committed, applied),
            wake_us = us(applied, self.woken),
            write_us = us(self.woken, written),
            total_us = us(self.received, written),
            "stages"
        );
    }
}

/// Writes answers as they come; ends when every sender is gone or the peer stops reading.
async fn write_responses<W: tokio::io::AsyncWrite + Unpin>(mut writer: W, mut responses: mpsc::Receiver<Outgoing>) {
    while let Some(Outgoing { response, trace }) = responses.recv().await {
        if let Err(error) = write_frame(&mut writer, &response).await {
            tracing::debug!(%error, "client connection write failed");
            return;
        }
        if let Some(trace) = trace {
            trace.report(Instant::now());
        }
    }
    let _ = writer.shutdown().await;
}

/// One connection: reads requests in order and starts each (see the module comment). The loop
/// owns the connection's state; the helpers below decide what a frame or a greeting gets.
///
/// `principal` is the TLS principal (client certificate's first DNS name) when there is one:
/// the connection's session is then `User:<that name>` (mutual TLS), with no SASL exchange.
async fn serve_connection<S: Stream>(
    stream: S,
    principal: Option<String>,
    context: Arc<NodeContext>,
    mut shutdown: Shutdown,
    budget: RequestBudget,
) {
    let mut session = match principal.as_deref().map(Session::from_certificate) {
        None => Session::default(),
        Some(Ok(session)) => {
            tracing::debug!(principal = %session.principal(), "client connection authenticated by its certificate");
            session
        }
        Some(Err(error)) => {
            tracing::warn!(%error, "refusing a client certificate whose name is not a principal");
            return;
        }
    };
    let (reader, writer) = tokio::io::split(stream);
    let frame_bytes_max = FRAME_BYTES_MAX.min(budget.bytes_max());
    let mut frames = FrameReader::new(reader, budget);
    let requests_max = context.config.connection_requests_max;
    let (responses, outbox) = mpsc::channel::<Outgoing>(requests_max);
    let writer_task = tokio::spawn(write_responses(writer, outbox));
    let in_flight = Arc::new(Semaphore::new(requests_max));
    // The bytes of this connection's unanswered produces (PRODUCE_BYTES_IN_FLIGHT_MAX).
    let produce_window = ProduceWindow::new();
    // F-N9 (simulation only): a handler asks for the connection to be reset.
    let reset = Arc::new(Notify::new());
    // The protocol version agreed by the Hello (None before it).
    let mut version: Option<u32> = None;
    // The handshake deadline until the Hello, then the idle deadline: each whole request moves
    // it on, and so does reaching it with a request in flight (busy, not idle).
    let idle = context.config.connection_idle_timeout();
    let mut deadline = Instant::now() + context.config.handshake_timeout();
    loop {
        let frame = tokio::select! {
            biased;
            _ = shutdown.stopping() => break,
            _ = reset.notified() => {
                // Both halves go: the peer sees the connection die with answers outstanding.
                writer_task.abort();
                return;
            }
            frame = frames.next(frame_bytes_max) => frame,
            _ = tokio::time::sleep_until(deadline) => {
                if version.is_some() && in_flight.available_permits() < requests_max {
                    deadline = Instant::now() + idle;
                    continue;
                }
                let mid_frame = frames.is_mid_frame();
                if version.is_some() {
                    tracing::debug!(mid_frame, ?idle, "closing an idle client connection");
                } else {
                    let message = format!("no Hello within {} ms; closing the connection", context.config.handshake_timeout_ms);
                    tracing::debug!(mid_frame, "closing a client connection: {message}");
                    let _ = responses.try_send(Outgoing::from(error_response(0, ErrorCode::HELLO_REQUIRED, message)));
                }
                break;
            }
        };
        let (mut request, admitted) = match parse_frame(frame) {
            Parsed::Request(request, admitted) => (request, admitted),
            Parsed::Refused { response, close } => {
                let _ = responses.send(Outgoing::from(response)).await;
                if close {
                    break;
                }
                continue;
            }
            Parsed::Closed => break,
        };
        let Some(agreed) = version else {
            let response = greet(&context, request, frame_bytes_max);
            version = response.has_hello().then(|| response.get_hello().protocol_version);
            let _ = responses.send(Outgoing::from(response)).await;
            if version.is_none() {
                break;
            }
            deadline = Instant::now() + idle;
            continue;
        };
        if agreed < PROTOCOL_VERSION_GROUPS && request.body.as_ref().is_some_and(request::group::is_group_request) {
            let message =
                format!("consumer-group requests need protocol version {PROTOCOL_VERSION_GROUPS}; this connection speaks {agreed}");
            let _ = responses.send(Outgoing::from(error_response(request.request_id, ErrorCode::UNSUPPORTED_VERSION, message))).await;
            continue;
        }
        if agreed < PROTOCOL_VERSION_SECURITY && request.body.as_ref().is_some_and(request::authorize::is_security_request) {
            let message = format!(
                "authentication, user and ACL requests need protocol version {PROTOCOL_VERSION_SECURITY}; this connection speaks {agreed}"
            );
            let _ = responses.send(Outgoing::from(error_response(request.request_id, ErrorCode::UNSUPPORTED_VERSION, message))).await;
            continue;
        }
        deadline = Instant::now() + idle;
        if let Some(Body::sasl_authenticate(sasl)) = take_sasl(&mut request) {
            // On the reader, in order: the exchange is the connection's state.
            let (response, close) = session.sasl_step(&context, request.request_id, sasl);
            let _ = responses.send(Outgoing::from(response)).await;
            if close {
                break;
            }
            continue;
        }
        if let Some((response, close)) = session.refusal(&context, request.request_id, request.body.as_ref()) {
            let _ = responses.send(Outgoing::from(response)).await;
            if close {
                break;
            }
            continue;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        // A produce waits here, before it is queued, while earlier ones hold too many bytes.
        let produce_held = match &request.body {
            Some(Body::produce(produce)) => match produce_window.admit(produce.batch.len(), &mut shutdown).await {
                Some(held) => Some(held),
                None => break,
            },
            _ => None,
        };
        let principal = session.principal().clone();
        start_request(&context, principal, request, (permit, admitted, produce_held), responses.clone(), &reset).await;
    }
    // In-flight requests still answer (their tasks hold senders); then the writer closes.
    drop(responses);
    let _ = writer_task.await;
}

/// The body of a SaslAuthenticate request (taken out of it); any other request is left whole.
fn take_sasl(request: &mut Request) -> Option<Body> {
    match request.body {
        Some(Body::sasl_authenticate(_)) => request.body.take(),
        _ => None,
    }
}

/// What a frame read from a connection is.
enum Parsed {
    /// With the budget's bytes for it, held until it is done.
    Request(Request, Admitted),
    /// Answered with an error; `close` when the connection cannot go on (its framing is lost).
    Refused { response: Response, close: bool },
    /// The peer closed the connection, or reading failed.
    Closed,
}

fn parse_frame(frame: Result<Option<(Bytes, Admitted)>, FrameError>) -> Parsed {
    let (body, admitted) = match frame {
        Ok(Some(frame)) => frame,
        Ok(None) => return Parsed::Closed,
        Err(error @ FrameError::TooLarge { .. }) => {
            let response = error_response(0, ErrorCode::FRAME_TOO_LARGE, format!("{error}; closing the connection"));
            return Parsed::Refused { response, close: true };
        }
        Err(error) => {
            tracing::debug!(%error, "client connection read failed");
            return Parsed::Closed;
        }
    };
    match decode_request(&body) {
        Ok(request) => Parsed::Request(request, admitted),
        Err((id, code, message)) => {
            Parsed::Refused { response: error_response(id, code, message), close: code == ErrorCode::MALFORMED_REQUEST }
        }
    }
}

/// The answer to a connection's first request: success for a Hello in a version this node
/// speaks, else an error (and the connection closes).
fn greet(context: &NodeContext, mut request: Request, frame_bytes_max: usize) -> Response {
    let id = request.request_id;
    let Some(Body::hello(hello)) = request.body.take() else {
        return error_response(id, ErrorCode::HELLO_REQUIRED, "the first request on a connection must be Hello");
    };
    if hello.protocol_version < PROTOCOL_VERSION_MIN {
        let message = format!(
            "protocol version {} is not supported; this node speaks {PROTOCOL_VERSION_MIN} to {PROTOCOL_VERSION}",
            hello.protocol_version
        );
        return error_response(id, ErrorCode::UNSUPPORTED_VERSION, message);
    }
    let mut answer = HelloResponse::new();
    // A newer client speaks this node's newest version; an older one its own.
    answer.protocol_version = hello.protocol_version.min(PROTOCOL_VERSION);
    answer.node_id = context.state.node_id;
    answer.frame_bytes_max = u32::try_from(frame_bytes_max).expect("frames fit a u32 length");
    let mut response = error_response(id, ErrorCode::NONE, "");
    response.set_hello(answer);
    response
}

/// What a request holds until it is answered: one of the connection's in-flight permits, its
/// bytes of the node's budget, and a produce's room in the connection's [`ProduceWindow`].
type Held = (OwnedSemaphorePermit, Admitted, Option<OwnedSemaphorePermit>);

/// Starts one request holding what it takes (`permit`, [`Held`], given back when the request is
/// answered). A produce is queued here, before the next request is read (pipelined batches of
/// one producer keep their order), and its outcome awaited off the reader; every other request
/// runs concurrently.
async fn start_request(
    context: &Arc<NodeContext>,
    principal: Principal,
    mut request: Request,
    permit: Held,
    responses: mpsc::Sender<Outgoing>,
    reset: &Arc<Notify>,
) {
    let id = request.request_id;
    let started = tokio::time::Instant::now();
    let produce = match request.body.take() {
        Some(Body::produce(produce)) => produce,
        body => {
            let api = body.as_ref().map_or("none", request::request_name);
            request.body = body;
            let context = context.clone();
            tokio::spawn(async move {
                let response = request::handle(&context, &principal, request).await;
                context.metrics.observe_request("native", api, started.elapsed());
                let _ = responses.send(Outgoing::from(response)).await;
                drop(permit);
            });
            return;
        }
    };
    if let Some(hold) = context.faults.request_hold.as_ref().and_then(|hold| hold.take()) {
        // F-N8 (simulation only): this request arrives late, after the client gave up on
        // it; requests behind it on the connection wait too, as on one TCP stream.
        tracing::debug!(id, ?hold, "fault: holding a produce request");
        tokio::time::sleep(hold).await;
    }
    let slot = context.stages.as_ref().map(|_| request::produce::TraceSlot::default());
    let pending = request::produce::produce_traced(context, &principal, id, produce, slot.clone()).await;
    let queued = Instant::now();
    let (context, reset) = (context.clone(), reset.clone());
    tokio::spawn(async move {
        let response = pending.await;
        context.metrics.observe_request("native", "produce", started.elapsed());
        let trace = slot.and_then(|slot| slot.take()).map(|(group, index, driver)| {
            Box::new(ProduceTrace { group, index, received: started, queued, driver, woken: Instant::now() })
        });
        if let Some(response) = response {
            if context.faults.response_cut.as_ref().and_then(|cut| cut.take()).is_some() {
                tracing::debug!(id, "fault: resetting the connection instead of answering");
                reset.notify_one();
            } else {
                let _ = responses.send(Outgoing { response, trace }).await;
            }
        }
        drop(permit);
    });
}
