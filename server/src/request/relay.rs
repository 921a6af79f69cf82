//! Asking another node over the client protocol: one connection, a Hello, one request, its
//! answer. Used to forward controller requests to the controller ([`super::admin`]) and to learn
//! the leaders of partitions this node does not host ([`super::leaders`]).
//!
//! With SASL on (`[auth] sasl`), the connection authenticates first as the nodes' own user
//! (`[auth] inter_node_user`, a super user): the other node serves a relayed request as that
//! user, so the relaying node checked the client's principal before relaying
//! ([`super::authorize`]).
//!
//! With TLS on the client listeners, the relay speaks TLS too, as the node: it presents its
//! peer certificate and checks the other node's against the cluster CA (`[tls] peer_ca`) and
//! the name `node-<id>`, so relaying needs peer TLS (`odradek tls init` certificates serve both
//! listeners). Nodes configure TLS alike: where client listeners require client certificates
//! (`client_ca`), a relay's session is its certificate's (`User:node-<id>`, to be listed among
//! the super users) and it skips SCRAM.

use odradek_client::scram::{self, ClientScram, Mechanism};
use odradek_client::tls::Stream;
use odradek_client::wire::proto::{self as wire, ErrorCode, Request, Request_oneof_body as Body, Response};
use odradek_client::wire::{read_frame, write_frame, FRAME_BYTES_MAX, PROTOCOL_VERSION};
use odradek_consensus::transport::node_certificate_name;
use odradek_consensus::NodeId;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::context::NodeContext;

/// The answer of node `to` (at its configured client address) to `body`. The caller bounds the
/// time it waits.
pub async fn call(context: &NodeContext, to: NodeId, purpose: &str, body: Body) -> std::io::Result<Response> {
    let Some(client_address) = context.client_address(to) else {
        return Err(std::io::Error::other(format!("node {to} is not a known node")));
    };
    let tcp = TcpStream::connect(client_address).await?;
    let mut stream: Box<dyn Stream> = match (&context.relay_tls, context.config.tls.clients()) {
        (_, false) => Box::new(tcp),
        (None, true) => {
            let reason = "client listeners speak TLS but this node has no peer TLS ([tls] peer_cert, peer_key, peer_ca) to relay with";
            return Err(std::io::Error::other(format!("cannot relay to node {to}: {reason}")));
        }
        (Some(tls), true) => {
            let name = ServerName::try_from(node_certificate_name(to)).map_err(std::io::Error::other)?;
            Box::new(tokio_rustls::TlsConnector::from(tls.connector_config()).connect(name, tcp).await?)
        }
    };
    let mut hello = wire::Hello::new();
    hello.protocol_version = PROTOCOL_VERSION;
    hello.client_id = format!("node-{}-{purpose}", context.state.node_id);
    let mut request_id = 1;
    // A listener that takes client certificates authenticates the relay by its own.
    let by_certificate = context.relay_tls.is_some() && context.config.tls.client_ca.is_some();
    if let Some((user, password)) = context.auth.inter_node_login().filter(|_| !by_certificate) {
        let hello = exchange(&mut stream, to, request_id, Body::hello(hello)).await?;
        if hello.error != ErrorCode::NONE {
            return Err(std::io::Error::other(format!("node {to} refused the Hello: {}", hello.error_message)));
        }
        authenticate(&mut stream, to, &mut request_id, user, password).await?;
    } else {
        // One write for both: the Hello's answer is read below, with the request's.
        let mut request = Request::new();
        request.request_id = request_id;
        request.set_hello(hello);
        write_frame(&mut stream, &request).await?;
    }
    exchange(&mut stream, to, request_id + 1, body).await
}

/// Sends `body` as request `id` and reads up to its answer (skipping the Hello's).
async fn exchange(stream: &mut Box<dyn Stream>, to: NodeId, id: u64, body: Body) -> std::io::Result<Response> {
    let mut request = Request::new();
    request.request_id = id;
    request.body = Some(body);
    write_frame(stream, &request).await?;
    for _ in 0..2 {
        let Some(frame) = read_frame(stream, FRAME_BYTES_MAX).await.map_err(std::io::Error::other)? else {
            return Err(std::io::Error::other(format!("node {to} closed the connection")));
        };
        let response = odradek_client::wire::decode_response(&frame).map_err(std::io::Error::other)?;
        if response.request_id == id {
            return Ok(response);
        }
    }
    Err(std::io::Error::other(format!("no answer from node {to}")))
}

/// The SCRAM exchange as `user`; `request_id` is the last id used.
async fn authenticate(stream: &mut Box<dyn Stream>, to: NodeId, request_id: &mut u64, user: &str, password: &str) -> std::io::Result<()> {
    let failed = |what: String| std::io::Error::other(format!("authenticating to node {to} as {user:?}: {what}"));
    let mechanism = Mechanism::Sha512;
    let (client, first) = ClientScram::new(mechanism, user, password, &scram::nonce());
    let mut step = wire::SaslAuthenticateRequest::new();
    step.mechanism = mechanism.name().to_string();
    step.auth_bytes = first.into_bytes();
    *request_id += 1;
    let answer = exchange(stream, to, *request_id, Body::sasl_authenticate(step)).await?;
    if answer.error != ErrorCode::NONE {
        return Err(failed(answer.error_message));
    }
    let server_first = String::from_utf8_lossy(&answer.get_sasl_authenticate().auth_bytes).into_owned();
    let (client, last) = client.final_message(&server_first).map_err(|error| failed(error.to_string()))?;
    let mut step = wire::SaslAuthenticateRequest::new();
    step.auth_bytes = last.into_bytes();
    *request_id += 1;
    let answer = exchange(stream, to, *request_id, Body::sasl_authenticate(step)).await?;
    if answer.error != ErrorCode::NONE {
        return Err(failed(answer.error_message));
    }
    let server_final = String::from_utf8_lossy(&answer.get_sasl_authenticate().auth_bytes).into_owned();
    client.verify(&server_final).map_err(|error| failed(error.to_string()))
}
