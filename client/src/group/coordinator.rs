//! Finding a group's coordinator and sending it requests.
//!
//! Owns: the group id and the coordinator last found for it (node id and address). Any broker
//! answers FindCoordinator; the coordinator is the raft leader of the group's partition of
//! `__consumer_offsets`, so it moves with leadership.
//!
//! Invariants:
//! - A request only goes to a connection whose negotiated protocol version has groups; on an
//!   older one it fails definitely before anything is sent.
//! - NOT_COORDINATOR with a `coordinator_hint` naming a broker the metadata knows switches to
//!   that broker; without a usable hint, and after COORDINATOR_NOT_AVAILABLE or a connection
//!   failure, the coordinator is forgotten and found again before the next request.
//! - [`Coordinator::request`] retries only failures that are both retriable and definite (the
//!   request certainly had no effect), so a retry can never apply a request twice, nor apply an
//!   older commit after a newer one; an indefinite failure is returned at once.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::{check, ClusterSession};
use crate::connection::Connection;
use crate::error::{ClientError, Result};
use crate::wire::proto::{
    ErrorCode, FindCoordinatorRequest, Request_oneof_body as RequestBody, Response, Response_oneof_body as ResponseBody,
};

/// Longest group id accepted locally (the coordinator has its own limit).
pub const GROUP_ID_BYTES_MAX: usize = 255;

/// The coordinator of one group, found on demand.
#[derive(Debug)]
pub struct Coordinator {
    cluster: ClusterSession,
    group: String,
    /// (node id, address) of the coordinator last found.
    known: Mutex<Option<(u64, String)>>,
}

impl Coordinator {
    /// A handle for `group`; finds the coordinator on first use.
    pub fn new(cluster: ClusterSession, group: &str) -> Result<Coordinator> {
        if group.is_empty() || group.len() > GROUP_ID_BYTES_MAX || group.chars().any(char::is_control) {
            return Err(ClientError::InvalidArgument(format!(
                "group id {group:?}: 1 to {GROUP_ID_BYTES_MAX} bytes, no control characters"
            )));
        }
        Ok(Coordinator { cluster, group: group.to_string(), known: Mutex::new(None) })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn cluster(&self) -> &ClusterSession {
        &self.cluster
    }

    /// The coordinator's node id, if one is known now.
    pub fn known_node(&self) -> Option<u64> {
        self.known.lock().expect("coordinator lock").as_ref().map(|(node, _)| *node)
    }

    /// Forgets the coordinator: the next request finds it again.
    pub fn forget(&self) {
        self.known.lock().expect("coordinator lock").take();
    }

    /// One FindCoordinator round trip through any broker.
    async fn find_once(&self) -> Result<(u64, String)> {
        let connection = self.cluster.any_connection().await?;
        connection.require_groups()?;
        let mut request = FindCoordinatorRequest::new();
        request.group = self.group.clone();
        let answer = connection.request(RequestBody::find_coordinator(request)).await;
        if answer.is_err() {
            self.cluster.suspect(connection.address());
        }
        let response = check(answer?)?;
        let Some(ResponseBody::find_coordinator(found)) = response.body else {
            return Err(ClientError::Protocol("FindCoordinator answered without a coordinator".into()));
        };
        if found.node_id == 0 || found.address.is_empty() {
            return Err(ClientError::server(ErrorCode::COORDINATOR_NOT_AVAILABLE, "FindCoordinator named no node"));
        }
        tracing::debug!(group = %self.group, node = found.node_id, address = %found.address, "found the group's coordinator");
        Ok((found.node_id, found.address))
    }

    async fn connection(&self) -> Result<Connection> {
        let known = self.known.lock().expect("coordinator lock").clone();
        let (node, address) = match known {
            Some(known) => known,
            None => {
                let found = self.find_once().await?;
                *self.known.lock().expect("coordinator lock") = Some(found.clone());
                found
            }
        };
        let connection = self.cluster.connection(&address).await.inspect_err(|_| self.forget())?;
        if connection.node_id() != 0 && connection.node_id() != node {
            self.forget();
            return Err(ClientError::server(ErrorCode::NOT_COORDINATOR, format!("{address} is node {}, not {node}", connection.node_id())));
        }
        connection.require_groups()?;
        Ok(connection)
    }

    /// Learns from a failed request: follows a usable hint, else forgets the coordinator.
    fn note_error(&self, error: &ClientError, hint: u64) {
        match error.code() {
            Some(ErrorCode::NOT_COORDINATOR) => {
                let address = (hint != 0).then(|| self.cluster.metadata().brokers.get(&hint).cloned()).flatten();
                let mut known = self.known.lock().expect("coordinator lock");
                *known = address.map(|address| (hint, address));
            }
            Some(ErrorCode::COORDINATOR_NOT_AVAILABLE) => self.forget(),
            Some(_) => {}
            None => self.forget(),
        }
    }

    /// Sends `body` to the coordinator once (finding it first if needed) and waits up to
    /// `timeout` for the answer. A server error comes back as [`ClientError::Server`].
    pub async fn request_once(&self, body: RequestBody, timeout: Duration) -> Result<Response> {
        let outcome = async {
            let connection = self.connection().await.map_err(|error| (error, 0))?;
            let answer = connection.start_with_timeout(body, timeout).await.map_err(|error| (error, 0))?;
            let response = answer.await.map_err(|error| (error, 0))?;
            let hint = response.coordinator_hint;
            check(response).map_err(|error| (error, hint))
        };
        let outcome: Result<Response, (ClientError, u64)> = outcome.await;
        outcome.map_err(|(error, hint)| {
            self.note_error(&error, hint);
            error
        })
    }

    /// [`request_once`](Self::request_once), retried with backoff while it fails retriably and
    /// definitely, until `deadline`. For requests where a definite failure leaves nothing behind
    /// (commits, fetches of committed offsets, admin requests).
    pub async fn request(&self, body: RequestBody, timeout: Duration, deadline: Instant) -> Result<Response> {
        self.request_retrying(body, timeout, deadline, false).await
    }

    /// Like [`request`](Self::request), but also retries failures whose outcome is unknown: for
    /// requests that change nothing (OffsetFetch, DescribeGroups, ListGroups).
    pub async fn request_read(&self, body: RequestBody, timeout: Duration, deadline: Instant) -> Result<Response> {
        self.request_retrying(body, timeout, deadline, true).await
    }

    async fn request_retrying(&self, body: RequestBody, timeout: Duration, deadline: Instant, read_only: bool) -> Result<Response> {
        let mut backoff = self.cluster.backoff();
        loop {
            match self.request_once(body.clone(), timeout).await {
                Ok(response) => return Ok(response),
                Err(error) if error.is_retriable() && (read_only || error.is_definite()) && Instant::now() < deadline => {
                    tracing::debug!(group = %self.group, %error, "group request failed; retrying");
                    let delay = backoff.next_delay().min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}
