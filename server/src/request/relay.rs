//! Asking another node over the client protocol: one connection, a Hello, one request, its
//! answer. Used to forward controller requests to the controller ([`super::admin`]) and to learn
//! the leaders of partitions this node does not host ([`super::leaders`]).

use odradek_client::wire::proto::{self as wire, Request, Request_oneof_body as Body, Response};
use odradek_client::wire::{read_frame, write_frame, FRAME_BYTES_MAX, PROTOCOL_VERSION};
use odradek_consensus::NodeId;

use crate::context::NodeContext;

/// The answer of node `to` (at its configured client address) to `body`. The caller bounds the
/// time it waits.
pub async fn call(context: &NodeContext, to: NodeId, purpose: &str, body: Body) -> std::io::Result<Response> {
    let Some(member) = context.config.nodes.iter().find(|m| m.id == to) else {
        return Err(std::io::Error::other(format!("node {to} is not a configured node")));
    };
    let mut stream = tokio::net::TcpStream::connect(member.client).await?;
    let mut hello = wire::Hello::new();
    hello.protocol_version = PROTOCOL_VERSION;
    hello.client_id = format!("node-{}-{purpose}", context.state.node_id);
    let mut request = Request::new();
    request.request_id = 1;
    request.set_hello(hello);
    write_frame(&mut stream, &request).await?;
    let mut request = Request::new();
    request.request_id = 2;
    request.body = Some(body);
    write_frame(&mut stream, &request).await?;
    for _ in 0..2 {
        let Some(frame) = read_frame(&mut stream, FRAME_BYTES_MAX).await.map_err(std::io::Error::other)? else {
            return Err(std::io::Error::other(format!("node {to} closed the connection")));
        };
        let response = odradek_client::wire::decode_response(&frame).map_err(std::io::Error::other)?;
        if response.request_id == 2 {
            return Ok(response);
        }
    }
    Err(std::io::Error::other(format!("no answer from node {to}")))
}
