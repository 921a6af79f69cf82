//! The client listener: one task per connection reading frames, handlers running concurrently,
//! one writer task per connection sending answers in completion order (clients match them by
//! request id).
//!
//! Bad input never takes the node down: an oversized frame is answered `FRAME_TOO_LARGE` and the
//! connection closed (its next frame boundary is unknowable without reading the body); a body
//! that is not a protobuf `Request` is answered `MALFORMED_REQUEST` and closed; a well-formed
//! request of an unknown kind (a newer client) is answered `UNKNOWN_REQUEST` and the connection
//! stays open. The first request must be a `Hello` naming a version this node speaks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use odradek_client::wire::proto::{ErrorCode, HelloResponse, Request_oneof_body as Body, Response};
use odradek_client::wire::{decode_request, error_response, read_frame, write_frame, FrameError, FRAME_BYTES_MAX, PROTOCOL_VERSION};
use odradek_seams::watch;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::broker::Context;

/// Accepts client connections until `shutdown` turns true.
pub async fn serve(listener: TcpListener, context: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = crate::server::stopping(&mut shutdown) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a client connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= context.config.connections_max {
            tracing::warn!(%peer, limit = context.config.connections_max, "refusing a client connection: too many open");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, Ordering::Relaxed);
        let (context, open, shutdown) = (context.clone(), open.clone(), shutdown.clone());
        tokio::spawn(async move {
            serve_connection(stream, context, shutdown).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Writes answers as they come; ends when every sender is gone or the peer stops reading.
async fn write_responses<W: tokio::io::AsyncWrite + Unpin>(mut writer: W, mut responses: mpsc::Receiver<Response>) {
    while let Some(response) = responses.recv().await {
        if let Err(error) = write_frame(&mut writer, &response).await {
            tracing::debug!(%error, "client connection write failed");
            return;
        }
    }
    let _ = writer.shutdown().await;
}

async fn serve_connection(stream: TcpStream, context: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let (mut reader, writer) = tokio::io::split(stream);
    let requests_max = context.config.connection_requests_max;
    let (responses, outbox) = mpsc::channel::<Response>(requests_max);
    let writer_task = tokio::spawn(write_responses(writer, outbox));
    let in_flight = Arc::new(Semaphore::new(requests_max));
    // F-N9 (simulation only): a handler asks for the connection to be reset.
    let reset = Arc::new(Notify::new());
    let mut greeted = false;
    loop {
        let frame = tokio::select! {
            biased;
            _ = crate::server::stopping(&mut shutdown) => break,
            _ = reset.notified() => {
                // Both halves go: the peer sees the connection die with answers outstanding.
                writer_task.abort();
                return;
            }
            frame = read_frame(&mut reader, FRAME_BYTES_MAX) => frame,
        };
        let body = match frame {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(error @ FrameError::TooLarge { .. }) => {
                let _ = responses.send(error_response(0, ErrorCode::FRAME_TOO_LARGE, format!("{error}; closing the connection"))).await;
                break;
            }
            Err(error) => {
                tracing::debug!(%error, "client connection read failed");
                break;
            }
        };
        let mut request = match decode_request(&body) {
            Ok(request) => request,
            Err((id, code, message)) => {
                let _ = responses.send(error_response(id, code, message)).await;
                if code == ErrorCode::MALFORMED_REQUEST {
                    break;
                }
                continue;
            }
        };
        let id = request.request_id;
        if !greeted {
            let Some(Body::hello(hello)) = request.body.take() else {
                let _ =
                    responses.send(error_response(id, ErrorCode::HELLO_REQUIRED, "the first request on a connection must be Hello")).await;
                break;
            };
            if hello.protocol_version != PROTOCOL_VERSION {
                let message = format!("protocol version {} is not supported; this node speaks {PROTOCOL_VERSION}", hello.protocol_version);
                let _ = responses.send(error_response(id, ErrorCode::UNSUPPORTED_VERSION, message)).await;
                break;
            }
            greeted = true;
            let mut answer = HelloResponse::new();
            answer.protocol_version = PROTOCOL_VERSION;
            answer.node_id = context.shared.node_id;
            answer.frame_bytes_max = FRAME_BYTES_MAX as u32;
            let mut response = error_response(id, ErrorCode::NONE, "");
            response.set_hello(answer);
            let _ = responses.send(response).await;
            continue;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        let responses = responses.clone();
        if let Some(Body::produce(_)) = &request.body {
            let Some(Body::produce(produce)) = request.body.take() else { unreachable!("matched just above") };
            if let Some(hold) = context.faults.request_hold.as_ref().and_then(|hold| hold.take()) {
                // F-N8 (simulation only): this request arrives late, after the client gave up on
                // it; requests behind it on the connection wait too, as on one TCP stream.
                tracing::debug!(id, ?hold, "fault: holding a produce request");
                tokio::time::sleep(hold).await;
            }
            // Queued in arrival order (pipelined batches of one producer keep their order);
            // the outcome is awaited off the reader.
            let pending = context.produce(id, produce).await;
            let (context, reset) = (context.clone(), reset.clone());
            tokio::spawn(async move {
                if let Some(response) = pending.await {
                    if context.faults.response_cut.as_ref().and_then(|cut| cut.take()).is_some() {
                        tracing::debug!(id, "fault: resetting the connection instead of answering");
                        reset.notify_one();
                    } else {
                        let _ = responses.send(response).await;
                    }
                }
                drop(permit);
            });
        } else {
            let context = context.clone();
            tokio::spawn(async move {
                let response = context.handle(request).await;
                let _ = responses.send(response).await;
                drop(permit);
            });
        }
    }
    // In-flight requests still answer (their tasks hold senders); then the writer closes.
    drop(responses);
    let _ = writer_task.await;
}
