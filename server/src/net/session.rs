//! A connection's principal and its SASL/SCRAM exchange (issue 19).
//!
//! A session starts anonymous. Two `SaslAuthenticate` requests (wire.proto) run one SCRAM
//! exchange ([`odradek_client::scram::ServerScram`]); success makes the session `User:NAME` for
//! the rest of the connection, any failure answers AUTHENTICATION_FAILED and closes it. One
//! exchange per connection: a second is refused (and closes), so a connection's principal never
//! changes once set.
//!
//! Invariants: a session is authenticated only after a proof verified against the credential
//! it looked up; before each later request [`Session::refusal`] checks that credential is still
//! the user's (a deleted user, or a changed password, ends the connection's access); with SASL
//! required, nothing but Hello and SaslAuthenticate is served before authentication.

use odradek_client::scram::{self, Credential, Mechanism, ServerScram};
use odradek_client::wire::error_response;
use odradek_client::wire::proto::{self as wire, ErrorCode, Request_oneof_body as Body, Response};

use crate::auth::Principal;
use crate::context::NodeContext;

/// Where a connection's credential came from (to check it is still valid).
#[derive(Debug)]
struct Login {
    user: String,
    mechanism: Mechanism,
    /// The StoredKey the proof verified against.
    stored_key: Vec<u8>,
}

#[derive(Debug)]
enum Step {
    /// No exchange yet.
    Start,
    /// The server-first message was sent.
    Challenged(ServerScram),
    Authenticated(Login),
    /// Authenticated by the client's TLS certificate (mutual TLS) for the whole connection.
    Certificate,
}

/// A connection's authentication state.
#[derive(Debug)]
pub struct Session {
    principal: Principal,
    step: Step,
}

impl Default for Session {
    fn default() -> Session {
        Session { principal: Principal::Anonymous, step: Step::Start }
    }
}

/// The credential of `user` for `mechanism`: a configured user's first, else the metadata log's.
fn lookup(context: &NodeContext, user: &str, mechanism: Mechanism) -> Option<Credential> {
    if let Some(credential) = context.auth.configured_user(user, mechanism) {
        return Some(credential.clone());
    }
    context.state.lock().meta.user(user).filter(|credential| credential.mechanism == mechanism).cloned()
}

fn failed(id: u64, message: impl Into<String>) -> (Response, bool) {
    (error_response(id, ErrorCode::AUTHENTICATION_FAILED, message), true)
}

impl Session {
    /// A session authenticated by the client certificate the TLS layer verified against the
    /// listener's client CA: `User:<the certificate's name>` for the whole connection, with no
    /// SASL exchange (a certificate whose name is not a valid user name is refused).
    pub fn from_certificate(name: &str) -> Result<Session, String> {
        Ok(Session { principal: Principal::from_certificate_cn(name)?, step: Step::Certificate })
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// One SaslAuthenticate request: the answer, and whether the connection must close.
    pub fn sasl_step(&mut self, context: &NodeContext, id: u64, request: wire::SaslAuthenticateRequest) -> (Response, bool) {
        let Ok(message) = std::str::from_utf8(&request.auth_bytes) else {
            return failed(id, "a SCRAM message is not UTF-8");
        };
        match std::mem::replace(&mut self.step, Step::Start) {
            Step::Start if !context.state.is_meta_ready() => {
                // A restarted node that has not replayed its metadata log yet does not know the
                // users: "unknown user" would be wrong and final. Retriable; try another node.
                let message = "this node is catching up on the cluster metadata (users); retry shortly";
                (error_response(id, ErrorCode::LEADER_NOT_AVAILABLE, message), true)
            }
            Step::Start => {
                let Some(mechanism) = Mechanism::parse(&request.mechanism) else {
                    let text =
                        format!("mechanism {:?} is not offered; this node offers SCRAM-SHA-256 and SCRAM-SHA-512", request.mechanism);
                    return (error_response(id, ErrorCode::UNSUPPORTED_SASL_MECHANISM, text), true);
                };
                let nonce = scram::nonce();
                match ServerScram::first(mechanism, message, &nonce, |user| lookup(context, user, mechanism)) {
                    Ok((server, server_first)) => {
                        self.step = Step::Challenged(server);
                        (sasl_response(id, server_first, ""), false)
                    }
                    Err(error) => {
                        tracing::info!(%error, "SASL authentication failed");
                        failed(id, "authentication failed: unknown user or wrong password (or a malformed SCRAM message)")
                    }
                }
            }
            Step::Challenged(server) => {
                let Credential { mechanism, stored_key, .. } = server.credential().clone();
                match server.finish(message) {
                    Ok((user, server_final)) => {
                        self.principal = Principal::User(user.clone());
                        self.step = Step::Authenticated(Login { user, mechanism, stored_key });
                        let principal = self.principal.to_string();
                        (sasl_response(id, server_final, &principal), false)
                    }
                    Err(error) => {
                        tracing::info!(%error, "SASL authentication failed");
                        failed(id, "authentication failed: unknown user or wrong password")
                    }
                }
            }
            Step::Authenticated(login) => {
                self.step = Step::Authenticated(login);
                failed(id, "this connection has authenticated already; open a new one to change user")
            }
            Step::Certificate => {
                self.step = Step::Certificate;
                failed(id, "this connection is authenticated by its TLS client certificate; SASL is not needed")
            }
        }
    }

    /// Why this connection may not send `body` now (an answer, and whether to close), or `None`
    /// when it may.
    pub fn refusal(&self, context: &NodeContext, id: u64, body: Option<&Body>) -> Option<(Response, bool)> {
        match &self.step {
            Step::Authenticated(login) => {
                let current = lookup(context, &login.user, login.mechanism);
                if current.is_none_or(|credential| credential.stored_key != login.stored_key) {
                    let message = format!("user {:?} was deleted or its password changed; authenticate again", login.user);
                    return Some(failed(id, message));
                }
                None
            }
            Step::Challenged(_) => Some(failed(id, "a SASL exchange was interrupted by another request")),
            Step::Start if context.auth.settings.sasl && !matches!(body, Some(Body::hello(_))) => {
                let message = "this node requires SASL authentication (SCRAM-SHA-256 or -512) first; this connection is User:ANONYMOUS";
                Some((error_response(id, ErrorCode::AUTHENTICATION_FAILED, message), false))
            }
            Step::Start | Step::Certificate => None,
        }
    }
}

fn sasl_response(id: u64, message: String, principal: &str) -> Response {
    let mut body = wire::SaslAuthenticateResponse::new();
    body.auth_bytes = message.into_bytes();
    body.principal = principal.to_string();
    let mut response = error_response(id, ErrorCode::NONE, "");
    response.set_sasl_authenticate(body);
    response
}
