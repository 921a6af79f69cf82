//! The metrics endpoint: a minimal HTTP/1.1 server on the node's runtime (no thread, no HTTP
//! runtime of its own). `GET /metrics` answers the registry as OpenMetrics text (what Prometheus
//! scrapes); any other path is 404, any other method 405, anything unparsable 400. One request
//! per connection (`Connection: close`).
//!
//! Bounded: at most `CONNECTIONS_MAX` scrapes at once (more are closed at once), a request head
//! of at most `REQUEST_HEAD_BYTES_MAX`, and `REQUEST_TIMEOUT` for reading it and writing the
//! answer: a stuck or hostile client holds one slot for a few seconds at most.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::context::NodeContext;
use crate::shutdown::Shutdown;

/// Scrapes served at once; Prometheus sends one per target at a time.
pub const CONNECTIONS_MAX: usize = 8;
/// The most bytes of a request line and headers read (a scrape sends a few hundred).
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Reading the request and writing the answer, together.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The content type of the OpenMetrics text format (Prometheus negotiates it by default).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves scrapes on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, context: Arc<NodeContext>, mut shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.stopping() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accepting a metrics connection failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("closing a metrics connection: {CONNECTIONS_MAX} scrapes in progress");
            continue;
        };
        let context = context.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &context)).await.is_err() {
                tracing::debug!("a metrics request timed out");
            }
            drop(slot);
        });
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// The route of a request head (request line and headers).
fn route(head: &str) -> Route {
    let line = head.lines().next().unwrap_or("");
    let mut words = line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) = (words.next(), words.next(), words.next(), words.next()) else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    if method != "GET" {
        return Route::MethodNotAllowed;
    }
    let path = target.split('?').next().unwrap_or(target);
    if path == "/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

/// Reads one request head (up to the blank line), or `None` when the client closed first or
/// sent more than `REQUEST_HEAD_BYTES_MAX` without one.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= REQUEST_HEAD_BYTES_MAX {
            return None;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn answer(mut stream: TcpStream, context: &NodeContext) {
    let route = match read_head(&mut stream).await {
        Some(head) => route(&head),
        None => Route::BadRequest,
    };
    let (status, content_type, body) = match route {
        Route::Metrics => ("200 OK", CONTENT_TYPE, super::scrape(context).await),
        Route::NotFound => ("404 Not Found", "text/plain", "not found: the metrics are at /metrics\n".to_string()),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "text/plain", "only GET\n".to_string()),
        Route::BadRequest => ("400 Bad Request", "text/plain", "bad request\n".to_string()),
    };
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let written = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    if let Err(error) = written.await {
        tracing::debug!(%error, "writing a metrics answer failed");
    }
}

#[cfg(test)]
mod tests {
    use super::{route, Route};

    #[test]
    fn requests_are_routed_by_method_and_path() {
        assert_eq!(route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics);
        assert_eq!(route("GET /metrics?name[]=x HTTP/1.0\r\n\r\n"), Route::Metrics, "a query string is ignored");
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route("GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route("POST /metrics HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
        assert_eq!(route("GET /metrics\r\n\r\n"), Route::BadRequest, "HTTP/0.9 is not spoken");
        assert_eq!(route("GET /metrics SPDY/3\r\n\r\n"), Route::BadRequest);
        assert_eq!(route("\r\n\r\n"), Route::BadRequest);
    }
}
