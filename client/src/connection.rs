//! One TCP connection to one broker: the `Hello` handshake, then pipelined requests matched to
//! their answers by request id.
//!
//! Owns: the socket (split into a reader task and a writer task), the table of requests waiting
//! for an answer, and the request-id counter. Invariants:
//! - Every request registered in the pending table gets exactly one outcome: its answer, a
//!   timeout, or a connection failure. Once the connection has failed no request is registered
//!   (the check and the insertion happen under the same lock as the failure's drain).
//! - Frames reach the socket in the order [`Connection::start`] calls complete, so one caller
//!   awaiting `start` before the next keeps its requests in order on the wire.
//! - A timeout or a lost connection after a request was queued is indefinite: the bytes may have
//!   reached the server. A request refused before it was queued is definite.
//! - The handshake negotiates the protocol version: the `Hello` names ours
//!   ([`PROTOCOL_VERSION`]), the server answers with the one it will speak, which must be in
//!   `PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION`; the connection remembers it, and
//!   [`Connection::require_groups`] refuses consumer-group requests on a version-1 connection
//!   before anything is sent.
//! - With [`ConnectionConfig::sasl`] set, the handshake runs a SASL/SCRAM exchange after the
//!   `Hello` ([`crate::scram`]) and checks the server's signature; no request is sent before it
//!   succeeded. A refusal is `AUTHENTICATION_FAILED` (definite, not retriable).
//!
//! Cost: the writer drains every queued frame and flushes once per wake-up, so a burst of
//! pipelined requests costs one flush (one simulated or real TCP send), not one per request.
//!
//! Runs under madsim: `tokio::io::split` rather than `into_split`, plain `tokio::spawn`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::{ClientError, Result};
use crate::scram::ClientScram;
use crate::tls::{ClientTls, HandshakeError, Stream};
use crate::wire::proto::{ErrorCode, Hello, Request, Request_oneof_body as RequestBody, Response, SaslAuthenticateRequest};
use crate::wire::{
    decode_response, encode_frame, read_frame, write_frame, FrameError, FRAME_BYTES_MAX, PROTOCOL_VERSION, PROTOCOL_VERSION_GROUPS,
    PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_SECURITY,
};

/// Most requests outstanding on one connection; `start` waits for room beyond this.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 4096;
/// Frames the writer task may have queued before `start` waits.
const WRITER_QUEUE_FRAMES_MAX: usize = 1024;

/// One handshake request and its answer (request ids 1 and 2: the SASL steps).
async fn handshake_step(
    reader: &mut ReadHalf<Box<dyn Stream>>,
    writer: &mut WriteHalf<Box<dyn Stream>>,
    id: u64,
    body: RequestBody,
    frame_bytes_max: usize,
) -> Result<Response> {
    let mut request = Request::new();
    request.request_id = id;
    request.body = Some(body);
    write_frame(writer, &request).await.map_err(|error| ClientError::Protocol(error.to_string()))?;
    let frame = read_frame(reader, frame_bytes_max)
        .await
        .map_err(|error| ClientError::Protocol(error.to_string()))?
        .ok_or_else(|| ClientError::Protocol("closed during authentication".into()))?;
    let response = decode_response(&frame).map_err(|error| ClientError::Protocol(error.to_string()))?;
    if response.error != ErrorCode::NONE {
        return Err(ClientError::server(response.error, response.error_message));
    }
    if response.request_id != id || !response.has_sasl_authenticate() {
        return Err(ClientError::Protocol(format!("unexpected answer during authentication: {response:?}")));
    }
    Ok(response)
}

/// The SCRAM exchange of the handshake (module comment).
async fn authenticate(
    reader: &mut ReadHalf<Box<dyn Stream>>,
    writer: &mut WriteHalf<Box<dyn Stream>>,
    credentials: &SaslCredentials,
    frame_bytes_max: usize,
    protocol_version: u32,
) -> Result<()> {
    if protocol_version < PROTOCOL_VERSION_SECURITY {
        let message = format!("the server speaks protocol version {protocol_version}, without authentication");
        return Err(ClientError::server(ErrorCode::UNSUPPORTED_VERSION, message));
    }
    let scram_failed = |error: crate::scram::ScramError| ClientError::server(ErrorCode::AUTHENTICATION_FAILED, error.to_string());
    let (client, first) = ClientScram::new(credentials.mechanism, &credentials.user, &credentials.password, &crate::scram::nonce());
    let mut step = SaslAuthenticateRequest::new();
    step.mechanism = credentials.mechanism.name().to_string();
    step.auth_bytes = first.into_bytes();
    let answer = handshake_step(reader, writer, 1, RequestBody::sasl_authenticate(step), frame_bytes_max).await?;
    let server_first = String::from_utf8_lossy(&answer.get_sasl_authenticate().auth_bytes).into_owned();
    let (client, last) = client.final_message(&server_first).map_err(scram_failed)?;
    let mut step = SaslAuthenticateRequest::new();
    step.auth_bytes = last.into_bytes();
    let answer = handshake_step(reader, writer, 2, RequestBody::sasl_authenticate(step), frame_bytes_max).await?;
    let server_final = String::from_utf8_lossy(&answer.get_sasl_authenticate().auth_bytes).into_owned();
    client.verify(&server_final).map_err(scram_failed)
}

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Bound on TCP connect plus the `Hello` round trip.
    pub connect_timeout: Duration,
    /// Default bound on each request's round trip (see [`Connection::start_with_timeout`]).
    pub request_timeout: Duration,
    /// Largest response frame accepted.
    pub frame_bytes_max: usize,
    /// TLS to the brokers (None: plaintext).
    pub tls: Option<ClientTls>,
    /// Credentials to authenticate with after the `Hello` (None: stay anonymous).
    pub sasl: Option<SaslCredentials>,
}

/// A SCRAM user and password; `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: crate::scram::Mechanism,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials").field("mechanism", &self.mechanism).field("user", &self.user).finish_non_exhaustive()
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            frame_bytes_max: FRAME_BYTES_MAX,
            tls: None,
            sasl: None,
        }
    }
}

type Reply = oneshot::Sender<Result<Response>>;

/// The part shared with the reader task: who is waiting for what.
struct Pending {
    waiting: BTreeMap<u64, Reply>,
    /// Set once, when the connection fails; no request is registered after.
    failure: Option<String>,
}

struct Shared {
    address: String,
    pending: Mutex<Pending>,
}

impl Shared {
    /// Fails every waiting request (indefinite: each may have been sent) and refuses new ones.
    fn fail(&self, reason: String) {
        let waiting = {
            let mut pending = self.pending.lock().expect("pending lock");
            if pending.failure.is_none() {
                pending.failure = Some(reason.clone());
            }
            std::mem::take(&mut pending.waiting)
        };
        if !waiting.is_empty() {
            tracing::debug!(address = %self.address, requests = waiting.len(), %reason, "connection failed with requests in flight");
        }
        for (_, reply) in waiting {
            let _ = reply.send(Err(ClientError::Disconnected { address: self.address.clone(), sent: true, reason: reason.clone() }));
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    node_id: u64,
    /// The version both sides speak on this connection, as the server's `Hello` answer said.
    protocol_version: u32,
    frame_bytes_max_server: u32,
    request_id_next: AtomicU64,
    writer: mpsc::Sender<Vec<u8>>,
    in_flight: Arc<Semaphore>,
    config: ConnectionConfig,
    /// Dropped with the last handle: tells the reader task to stop.
    _shutdown: oneshot::Sender<()>,
}

/// A connection to one broker; cheap to clone, shared by every user of that broker.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("address", &self.inner.shared.address).field("node_id", &self.inner.node_id).finish()
    }
}

/// The answer to one request, or its timeout; see [`Connection::start`]. The timeout runs from
/// the moment the request was queued, whether or not this future is being polled.
pub struct ResponseFuture {
    future: BoxFuture<'static, Result<Response>>,
}

impl Future for ResponseFuture {
    type Output = Result<Response>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.future.as_mut().poll(cx)
    }
}

impl Connection {
    /// Connects to `address`, says `Hello` and starts the reader and writer tasks.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), odradek_client::ClientError> {
    /// use odradek_client::connection::{Connection, ConnectionConfig};
    /// use odradek_client::wire::proto::{MetadataRequest, Request_oneof_body};
    ///
    /// let connection = Connection::connect("127.0.0.1:9092", "example", ConnectionConfig::default()).await?;
    /// let response = connection.request(Request_oneof_body::metadata(MetadataRequest::new())).await?;
    /// println!("{} brokers", response.get_metadata().brokers.len());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(address: &str, client_id: &str, config: ConnectionConfig) -> Result<Connection> {
        let connect_error = |reason: String| ClientError::Connect { address: address.to_string(), reason };
        let refused = |reason: String| ClientError::Refused { address: address.to_string(), reason };
        let handshake = async {
            let stream = TcpStream::connect(address).await.map_err(|error| connect_error(error.to_string()))?;
            let _ = stream.set_nodelay(true);
            let stream: Box<dyn Stream> = match &config.tls {
                None => Box::new(stream),
                Some(tls) => {
                    let stream = tls.handshake(address, stream).await.map_err(|error| match error {
                        HandshakeError::Config(_) | HandshakeError::Rejected(_) => refused(error.to_string()),
                        HandshakeError::Network(_) => connect_error(error.to_string()),
                    })?;
                    Box::new(stream)
                }
            };
            let (mut reader, mut writer) = tokio::io::split(stream);
            let mut hello = Hello::new();
            hello.protocol_version = PROTOCOL_VERSION;
            hello.client_id = client_id.to_string();
            let mut request = Request::new();
            request.request_id = 0;
            request.set_hello(hello);
            write_frame(&mut writer, &request).await.map_err(|error| connect_error(error.to_string()))?;
            let body = read_frame(&mut reader, config.frame_bytes_max)
                .await
                .map_err(|error| match error {
                    // A TLS alert after the handshake: the node rejected our certificate (or
                    // its absence) once it saw it.
                    FrameError::Io(error) if config.tls.is_some() && error.kind() == std::io::ErrorKind::InvalidData => {
                        refused(format!("the node refused this TLS connection: {error} (does it require a client certificate?)"))
                    }
                    error => connect_error(error.to_string()),
                })?
                .ok_or_else(|| connect_error("closed during the handshake".into()))?;
            let response = decode_response(&body).map_err(|error| connect_error(error.to_string()))?;
            if response.error == ErrorCode::HELLO_REQUIRED {
                // Our Hello was the first frame, so the node did not take it as one: a TLS-only
                // listener says so this way.
                return Err(refused(format!("Hello refused: {}", response.error_message)));
            }
            if response.error != ErrorCode::NONE {
                return Err(connect_error(format!("Hello refused: {:?}: {}", response.error, response.error_message)));
            }
            // The server answers with the version it will speak: ours or an older one we still know.
            if !response.has_hello() || !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&response.get_hello().protocol_version) {
                return Err(connect_error(format!("unexpected Hello answer: {response:?}")));
            }
            let hello = response.get_hello().clone();
            if let Some(credentials) = &config.sasl {
                authenticate(&mut reader, &mut writer, credentials, config.frame_bytes_max, hello.protocol_version).await.map_err(
                    |error| match error {
                        ClientError::Server { .. } => error,
                        other => connect_error(other.to_string()),
                    },
                )?;
            }
            Ok((reader, writer, hello))
        };
        let (reader, writer, hello) = tokio::time::timeout(config.connect_timeout, handshake)
            .await
            .map_err(|_| connect_error(format!("no handshake within {:?}", config.connect_timeout)))??;

        let shared =
            Arc::new(Shared { address: address.to_string(), pending: Mutex::new(Pending { waiting: BTreeMap::new(), failure: None }) });
        let (writer_tx, writer_rx) = mpsc::channel(WRITER_QUEUE_FRAMES_MAX);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        tokio::spawn(write_loop(shared.clone(), writer, writer_rx));
        tokio::spawn(read_loop(shared.clone(), reader, config.frame_bytes_max, shutdown_rx));
        tracing::debug!(address, node_id = hello.node_id, protocol_version = hello.protocol_version, "connected");
        Ok(Connection {
            inner: Arc::new(Inner {
                shared,
                node_id: hello.node_id,
                protocol_version: hello.protocol_version,
                frame_bytes_max_server: hello.frame_bytes_max,
                // The handshake's ids (0, and 1 and 2 for SASL) were all answered: reused safely.
                request_id_next: AtomicU64::new(1),
                writer: writer_tx,
                in_flight: Arc::new(Semaphore::new(REQUESTS_IN_FLIGHT_MAX)),
                config,
                _shutdown: shutdown_tx,
            }),
        })
    }

    /// The address this connection was opened to.
    pub fn address(&self) -> &str {
        &self.inner.shared.address
    }

    /// The node id the server gave in its `Hello` answer.
    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    /// The protocol version negotiated by the handshake, in
    /// `PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION`.
    pub fn protocol_version(&self) -> u32 {
        self.inner.protocol_version
    }

    /// Fails definitely (nothing is sent) when the connection's protocol version has no
    /// consumer-group requests.
    pub fn require_groups(&self) -> Result<()> {
        if self.inner.protocol_version >= PROTOCOL_VERSION_GROUPS {
            return Ok(());
        }
        Err(ClientError::server(
            ErrorCode::UNSUPPORTED_VERSION,
            format!(
                "{} speaks protocol version {}; consumer groups need version {PROTOCOL_VERSION_GROUPS} (nothing was sent)",
                self.inner.shared.address, self.inner.protocol_version
            ),
        ))
    }

    /// The largest frame the server accepts (0 if it did not say).
    pub fn frame_bytes_max_server(&self) -> u32 {
        self.inner.frame_bytes_max_server
    }

    /// True once the connection has failed; every later request fails definitely.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.pending.lock().expect("pending lock").failure.is_some()
    }

    /// Sends a request and waits for its answer (or the default request timeout). A server error
    /// code is returned as `Ok` with `response.error` set: callers decide what it means.
    pub async fn request(&self, body: RequestBody) -> Result<Response> {
        self.start(body).await?.await
    }

    /// Queues a request with the default timeout; see [`start_with_timeout`](Self::start_with_timeout).
    pub async fn start(&self, body: RequestBody) -> Result<ResponseFuture> {
        self.start_with_timeout(body, self.inner.config.request_timeout).await
    }

    /// Queues a request for the writer and returns the future of its answer. When this returns
    /// `Ok` the frame is queued behind every frame queued before it; an error here is definite
    /// (nothing was queued). The answer future fails with [`ClientError::Timeout`] after
    /// `timeout`, counted from now.
    pub async fn start_with_timeout(&self, body: RequestBody, timeout: Duration) -> Result<ResponseFuture> {
        let permit = self.inner.in_flight.clone().acquire_owned().await.expect("the in-flight semaphore is never closed");
        let request_id = self.inner.request_id_next.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut pending = self.inner.shared.pending.lock().expect("pending lock");
            if let Some(reason) = &pending.failure {
                return Err(self.disconnected(false, reason.clone()));
            }
            let previous = pending.waiting.insert(request_id, reply_tx);
            assert!(previous.is_none(), "request ids are unique per connection");
        }
        let frame = frame_for(request_id, body);
        if self.inner.writer.send(frame).await.is_err() {
            self.inner.shared.pending.lock().expect("pending lock").waiting.remove(&request_id);
            return Err(self.disconnected(false, "writer stopped".into()));
        }
        Ok(self.answer_future(request_id, reply_rx, timeout, permit))
    }

    fn answer_future(
        &self,
        request_id: u64,
        reply_rx: oneshot::Receiver<Result<Response>>,
        timeout: Duration,
        permit: OwnedSemaphorePermit,
    ) -> ResponseFuture {
        // Created now, so the deadline counts from now even if the future is polled later.
        let timed = tokio::time::timeout(timeout, reply_rx);
        let shared = self.inner.shared.clone();
        let guard = Forget { shared: shared.clone(), request_id };
        let future = async move {
            let _permit = permit;
            let _guard = guard;
            match timed.await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => {
                    Err(ClientError::Disconnected { address: shared.address.clone(), sent: true, reason: "connection dropped".into() })
                }
                Err(_) => {
                    shared.pending.lock().expect("pending lock").waiting.remove(&request_id);
                    Err(ClientError::Timeout { timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX) })
                }
            }
        };
        ResponseFuture { future: future.boxed() }
    }

    /// Queues a request that gets no answer (a produce with acks=none). `Ok` means queued for the
    /// socket, not delivered.
    pub async fn send_oneway(&self, body: RequestBody) -> Result<()> {
        if let Some(reason) = self.inner.shared.pending.lock().expect("pending lock").failure.clone() {
            return Err(self.disconnected(false, reason));
        }
        let request_id = self.inner.request_id_next.fetch_add(1, Ordering::Relaxed);
        self.inner.writer.send(frame_for(request_id, body)).await.map_err(|_| self.disconnected(false, "writer stopped".into()))
    }

    fn disconnected(&self, sent: bool, reason: String) -> ClientError {
        ClientError::Disconnected { address: self.inner.shared.address.clone(), sent, reason }
    }
}

/// Takes a request out of the pending table when its answer future is dropped unanswered, so
/// an abandoned request cannot stay registered for the connection's lifetime.
struct Forget {
    shared: Arc<Shared>,
    request_id: u64,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.shared.pending.lock().expect("pending lock").waiting.remove(&self.request_id);
    }
}

fn frame_for(request_id: u64, body: RequestBody) -> Vec<u8> {
    let mut request = Request::new();
    request.request_id = request_id;
    request.body = Some(body);
    encode_frame(&request)
}

/// Writes queued frames, flushing once per batch of frames; stops when every handle is gone or
/// the socket fails.
async fn write_loop(shared: Arc<Shared>, mut writer: WriteHalf<Box<dyn Stream>>, mut frames: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = frames.recv().await {
        let mut result = writer.write_all(&frame).await;
        // Take what else is queued now: one flush for the burst.
        while result.is_ok() {
            match frames.try_recv() {
                Ok(frame) => result = writer.write_all(&frame).await,
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = writer.flush().await;
        }
        if let Err(error) = result {
            shared.fail(format!("write failed: {error}"));
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Delivers answers to whoever waits for them, until the socket ends or the last handle drops.
async fn read_loop(
    shared: Arc<Shared>,
    mut reader: ReadHalf<Box<dyn Stream>>,
    frame_bytes_max: usize,
    mut shutdown: oneshot::Receiver<()>,
) {
    let reason = loop {
        let frame = tokio::select! {
            biased;
            _ = &mut shutdown => break "connection closed by the client".to_string(),
            frame = read_frame(&mut reader, frame_bytes_max) => frame,
        };
        let body = match frame {
            Ok(Some(body)) => body,
            Ok(None) => break "closed by the server".to_string(),
            Err(error) => break format!("read failed: {error}"),
        };
        let response = match decode_response(&body) {
            Ok(response) => response,
            Err(error) => break format!("undecodable response: {error}"),
        };
        let reply = shared.pending.lock().expect("pending lock").waiting.remove(&response.request_id);
        match reply {
            Some(reply) => {
                let _ = reply.send(Ok(response));
            }
            // Answer to a request that timed out: nobody waits any more.
            None => tracing::trace!(address = %shared.address, request_id = response.request_id, "answer to a forgotten request"),
        }
    };
    shared.fail(reason);
}
