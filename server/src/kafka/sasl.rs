//! SASL on the Kafka listener (issue 16): SaslHandshake v0-1 and SaslAuthenticate v0-2 carrying
//! the native listener's SCRAM-SHA-256/512 exchange ([`crate::net::session::Session`], the same
//! user store and the same credential checks), so a Kafka client logs in as the same
//! `User:NAME` the ACLs of `crate::auth` name. SaslHandshake v0 is advertised (as Kafka does;
//! librdkafka 2.0.2 enables SCRAM only then) and answered like v1, but the raw SASL frames
//! without Kafka headers that only pre-SaslAuthenticate clients (Kafka before 1.0) send after it
//! are not served: they do not decode as requests and close the connection.
//!
//! Invariants of a connection:
//! - its principal is `User:ANONYMOUS` until one exchange succeeds, then that user's for the
//!   rest of the connection (a second exchange is refused and closes it);
//! - with `[auth] sasl` on, nothing but ApiVersions and the exchange is served before it
//!   succeeds (`kafka::serve_connection` closes the connection, as Kafka does);
//! - a failed exchange answers SASL_AUTHENTICATION_FAILED (58) and closes the connection.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;
use odradek_client::scram::Mechanism;
use odradek_client::wire::proto::{self as wire, ErrorCode};

use super::errors;
use crate::context::NodeContext;
use crate::net::session::Session;

/// The mechanisms this listener offers: the native listener's.
const MECHANISMS: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

/// Whether `api_key` is part of the SASL exchange (answered on the connection's reader, in order).
pub fn is_sasl(api_key: ApiKey) -> bool {
    matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// One SaslHandshake or SaslAuthenticate: the answer, and whether the connection must close
/// after it. `mechanism` is the one the handshake chose.
pub fn step(
    context: &NodeContext,
    session: &mut Session,
    mechanism: &mut Option<String>,
    id: u64,
    request: RequestKind,
) -> (ResponseKind, bool) {
    match request {
        RequestKind::SaslHandshake(body) => {
            let offered: Vec<StrBytes> = MECHANISMS.iter().map(|m| text(m.name())).collect();
            let response = SaslHandshakeResponse::default().with_mechanisms(offered);
            let asked = body.mechanism.as_str();
            match Mechanism::parse(asked) {
                Some(_) if context.auth.settings.sasl => {
                    *mechanism = Some(asked.to_string());
                    (ResponseKind::SaslHandshake(response), false)
                }
                // No SASL on this node, or a mechanism not offered (PLAIN, OAUTHBEARER, GSSAPI).
                _ => (ResponseKind::SaslHandshake(response.with_error_code(errors::UNSUPPORTED_SASL_MECHANISM)), true),
            }
        }
        RequestKind::SaslAuthenticate(body) => {
            let failed = |message: &str| {
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(errors::SASL_AUTHENTICATION_FAILED)
                    .with_error_message(Some(text(message)));
                (ResponseKind::SaslAuthenticate(response), true)
            };
            let Some(chosen) = mechanism.clone() else {
                return failed("SaslAuthenticate before a SaslHandshake chose a mechanism");
            };
            let mut ask = wire::SaslAuthenticateRequest::new();
            ask.mechanism = chosen;
            ask.auth_bytes = body.auth_bytes.to_vec();
            let (answer, close) = session.sasl_step(context, id, ask);
            if answer.error != ErrorCode::NONE || !answer.has_sasl_authenticate() {
                return failed(&answer.error_message);
            }
            let response = SaslAuthenticateResponse::default()
                .with_auth_bytes(Bytes::from(answer.get_sasl_authenticate().auth_bytes.clone()))
                .with_session_lifetime_ms(0);
            (ResponseKind::SaslAuthenticate(response), close)
        }
        other => unreachable!("only SASL requests are routed here, not {other:?}"),
    }
}
