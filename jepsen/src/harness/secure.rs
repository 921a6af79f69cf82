//! `--secure` runs (issue 19): every node requires SASL/SCRAM and checks ACLs. The nodes share a
//! users file with the administrator and their own user (super users); the setup creates the
//! workload's user in the metadata log and grants it everything on topics and groups and describe
//! on the cluster, and every worker logs in as it. The checks are the usual ones: a workload that
//! runs authenticated must keep every guarantee it keeps open.

use std::path::Path;
use std::time::Duration;

use odradek_client::connection::SaslCredentials;
use odradek_client::scram::Mechanism;
use odradek_client::wire::proto::Acl;
use odradek_client::{Admin, ClusterSession};
use tokio::time::Instant;

use super::workload::{cluster_config, WorkloadTarget};

const ADMIN: (&str, &str) = ("admin", "jepsen-admin-secret");
const NODE_USER: (&str, &str) = ("node", "jepsen-node-secret");
const WORKLOAD_USER: (&str, &str) = ("jepsen", "jepsen-workload-secret");
/// Bound on the setup (users and ACLs) while the cluster comes up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes the users file under `dir`; the flags every node runs with.
pub fn server_flags(dir: &Path) -> std::io::Result<Vec<String>> {
    let path = dir.join("users");
    std::fs::write(&path, format!("{}:{}\n{}:{}\n", ADMIN.0, ADMIN.1, NODE_USER.0, NODE_USER.1))?;
    let path = path.to_str().expect("the run directory is UTF-8").to_string();
    Ok([
        "--auth",
        "scram",
        "--authorization",
        "on",
        "--users-file",
        &path,
        "--super-user",
        "User:admin",
        "--super-user",
        "User:node",
        "--inter-node-user",
        NODE_USER.0,
    ]
    .into_iter()
    .map(String::from)
    .collect())
}

fn allow_all(resource_type: &str, name: &str, operation: &str) -> Acl {
    let mut acl = Acl::new();
    acl.principal = format!("User:{}", WORKLOAD_USER.0);
    acl.resource_type = resource_type.to_string();
    acl.resource_name = name.to_string();
    acl.pattern = "literal".to_string();
    acl.operation = operation.to_string();
    acl.permission = "allow".to_string();
    acl
}

/// As the administrator: the workload's user and its ACLs. Its login.
pub async fn setup(target: &WorkloadTarget) -> Result<SaslCredentials, String> {
    let admin_login = SaslCredentials { mechanism: Mechanism::Sha512, user: ADMIN.0.to_string(), password: ADMIN.1.to_string() };
    let admin_target = WorkloadTarget { sasl: Some(admin_login), ..target.clone() };
    let session = ClusterSession::new(&target.bootstrap(), cluster_config(&admin_target, "jepsen-security-setup".into()))
        .map_err(|e| e.to_string())?;
    let admin = Admin::with_cluster(session);
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut last = String::new();
    let acls = [allow_all("topic", "*", "all"), allow_all("group", "*", "all"), allow_all("cluster", "odradek-cluster", "describe")];
    while Instant::now() < deadline {
        let mut outcome = admin.upsert_user(WORKLOAD_USER.0, WORKLOAD_USER.1, Mechanism::Sha256, 4096).await;
        for acl in &acls {
            if outcome.is_ok() {
                outcome = admin.create_acl(acl.clone()).await;
            }
        }
        match outcome {
            Ok(()) => {
                return Ok(SaslCredentials {
                    mechanism: Mechanism::Sha256,
                    user: WORKLOAD_USER.0.to_string(),
                    password: WORKLOAD_USER.1.to_string(),
                })
            }
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("security setup did not finish within {SETUP_TIMEOUT:?}: {last}"))
}
