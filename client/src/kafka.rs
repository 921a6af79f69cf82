//! Apache Kafka's request framing and SASL/SCRAM login, for the project's hand-written Kafka
//! clients (feature `kafka`, issue 16): the simulator's Kafka workload, the Jepsen harness's raw
//! requests (`--offset-delete`) and the server's Kafka tests all speak to the Kafka listener with
//! the `kafka-protocol` codecs the listener itself uses, and frame their requests here.
//!
//! * [`frame`] / [`decode_response`]: sans-IO, one request as it goes on the wire (a 4-byte
//!   big-endian length, the request header at the version the API key and version call for, the
//!   body) and one response frame's body back (its correlation id and the decoded body; trailing
//!   bytes are an error).
//! * [`KafkaStream`]: one request at a time over any async byte stream (TCP, or TLS through
//!   [`crate::tls::ClientTls::handshake`]), correlation ids in order, and the SCRAM exchange
//!   over SaslHandshake and SaslAuthenticate with this crate's [`crate::scram`].
//!
//! Invariant: an answer is taken only for the request just sent (its correlation id); anything
//! else fails the call, and the caller drops the connection (a late answer can never be taken
//! for the next request's).

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::connection::SaslCredentials;
use crate::scram::ClientScram;

/// The SaslHandshake version of the login (v1: SaslAuthenticate carries the SCRAM messages).
pub const SASL_HANDSHAKE_VERSION: i16 = 1;
/// The SaslAuthenticate version of the login.
pub const SASL_AUTHENTICATE_VERSION: i16 = 2;
/// Kafka's NONE error code.
pub const NONE: i16 = 0;
/// Kafka's SASL_AUTHENTICATION_FAILED.
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// `request` (for `api_key` at `version`) framed for the wire: length, header, body.
pub fn frame(api_key: ApiKey, version: i16, correlation_id: i32, client_id: &str, request: &RequestKind) -> Vec<u8> {
    let mut body = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    header.encode(&mut body, api_key.request_header_version(version)).expect("a request header encodes");
    request.encode(&mut body, version).expect("a request built by this process encodes");
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// One response frame's body (without its length) to an `api_key` request at `version`: its
/// correlation id and body, or why it does not decode (trailing bytes included).
pub fn decode_response(api_key: ApiKey, version: i16, mut body: Bytes) -> Result<(i32, ResponseKind), String> {
    let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version)).map_err(|e| e.to_string())?;
    let response = ResponseKind::decode(api_key, &mut body, version).map_err(|e| e.to_string())?;
    if body.has_remaining() {
        return Err(format!("{} trailing bytes", body.remaining()));
    }
    Ok((header.correlation_id, response))
}

/// Why a call got no answer.
#[derive(Debug)]
pub enum CallError {
    /// Nothing of the request left this client (no connection could be made, or its login
    /// failed before the request).
    Unsent(String),
    /// The request may have reached the server.
    Lost(String),
    /// The server closed the connection before answering (end of stream where the answer's
    /// length was due): Kafka's answer to a request it will not serve on this connection.
    Closed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unsent(why) => write!(f, "not sent: {why}"),
            CallError::Lost(why) => write!(f, "maybe sent: {why}"),
            CallError::Closed(why) => write!(f, "closed by the server: {why}"),
        }
    }
}

/// Why a SASL exchange did not log the connection in.
#[derive(Debug)]
pub enum LoginError {
    /// The node answered SASL_AUTHENTICATION_FAILED (or refused the mechanism): a definite
    /// refusal.
    Refused(i16, String),
    /// No answer, a broken connection, or an answer this client cannot verify.
    Failed(String),
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginError::Refused(code, message) => write!(f, "refused with code {code}: {message}"),
            LoginError::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// A Kafka connection over `S`, one request at a time.
pub struct KafkaStream<S> {
    stream: S,
    correlation_next: i32,
    client_id: String,
    response_bytes_max: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> KafkaStream<S> {
    /// Requests go out with `client_id`; answers longer than `response_bytes_max` fail the call.
    pub fn new(stream: S, client_id: &str, response_bytes_max: usize) -> KafkaStream<S> {
        KafkaStream { stream, correlation_next: 1, client_id: client_id.to_string(), response_bytes_max }
    }

    /// Sends `request` at `version` and reads its answer.
    pub async fn call(&mut self, api_key: ApiKey, version: i16, request: RequestKind) -> Result<ResponseKind, CallError> {
        let correlation_id = self.correlation_next;
        self.correlation_next += 1;
        let frame = frame(api_key, version, correlation_id, &self.client_id, &request);
        let lost = |what: &str, e: std::io::Error| CallError::Lost(format!("{api_key:?} {what}: {e}"));
        self.stream.write_all(&frame).await.map_err(|e| lost("write", e))?;
        // madsim's streams (and TLS) send what was written on flush.
        self.stream.flush().await.map_err(|e| lost("flush", e))?;
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => CallError::Closed(format!("{api_key:?}")),
            _ => lost("read", e),
        })?;
        let length = u32::from_be_bytes(length) as usize;
        if length > self.response_bytes_max {
            return Err(CallError::Lost(format!("{api_key:?}: a {length}-byte response")));
        }
        let mut response = vec![0u8; length];
        self.stream.read_exact(&mut response).await.map_err(|e| lost("read", e))?;
        let (answered, decoded) = decode_response(api_key, version, Bytes::from(response))
            .map_err(|e| CallError::Lost(format!("{api_key:?}: undecodable response: {e}")))?;
        if answered != correlation_id {
            return Err(CallError::Lost(format!("{api_key:?}: answer to {answered} for {correlation_id}")));
        }
        Ok(decoded)
    }

    /// The SCRAM exchange as `login`: SaslHandshake, then two SaslAuthenticate rounds
    /// (client-first, client-final), and the server's signature checked.
    pub async fn login(&mut self, login: &SaslCredentials) -> Result<(), LoginError> {
        let failed = |e: CallError| LoginError::Failed(e.to_string());
        let handshake =
            RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(login.mechanism.name())));
        match self.call(ApiKey::SaslHandshake, SASL_HANDSHAKE_VERSION, handshake).await.map_err(failed)? {
            ResponseKind::SaslHandshake(answer) if answer.error_code == NONE => {}
            ResponseKind::SaslHandshake(answer) => return Err(LoginError::Refused(answer.error_code, "mechanism refused".into())),
            _ => return Err(LoginError::Failed("a SaslHandshake got another answer".into())),
        }
        let (scram, first) = ClientScram::new(login.mechanism, &login.user, &login.password, &crate::scram::nonce());
        let server_first = self.authenticate(first.into_bytes()).await?;
        let server_first = String::from_utf8(server_first).map_err(|_| LoginError::Failed("server-first is not UTF-8".into()))?;
        let (expected, last) = scram.final_message(&server_first).map_err(|e| LoginError::Failed(format!("server-first: {e}")))?;
        let server_final = self.authenticate(last.into_bytes()).await?;
        let server_final = String::from_utf8(server_final).map_err(|_| LoginError::Failed("server-final is not UTF-8".into()))?;
        expected.verify(&server_final).map_err(|e| LoginError::Failed(format!("server-final: {e}")))
    }

    /// One SaslAuthenticate round: the server's bytes.
    async fn authenticate(&mut self, bytes: Vec<u8>) -> Result<Vec<u8>, LoginError> {
        let request = RequestKind::SaslAuthenticate(SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)));
        match self.call(ApiKey::SaslAuthenticate, SASL_AUTHENTICATE_VERSION, request).await {
            Ok(ResponseKind::SaslAuthenticate(answer)) if answer.error_code == NONE => Ok(answer.auth_bytes.to_vec()),
            Ok(ResponseKind::SaslAuthenticate(answer)) => {
                Err(LoginError::Refused(answer.error_code, answer.error_message.map(|m| m.to_string()).unwrap_or_default()))
            }
            Ok(_) => Err(LoginError::Failed("a SaslAuthenticate got another answer".into())),
            Err(e) => Err(LoginError::Failed(e.to_string())),
        }
    }
}
