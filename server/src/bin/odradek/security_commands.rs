//! `odradek user` and `odradek acl`: the cluster's SCRAM users and ACLs (issue 19). Both need
//! alter on the cluster (listing: describe), so they run as a super user or a user with that
//! ACL (`--user`, password in ODRADEK_PASSWORD).

use std::io::BufRead;

use clap::{Args, Subcommand};
use odradek_client::scram::{Mechanism, ITERATIONS_MIN};
use odradek_client::wire::proto::Acl;

use crate::client_commands::{explain, Bootstrap};
use crate::output::say;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user, or change its password. The password is read from stdin
    /// (--password-stdin) or the environment variable ODRADEK_NEW_PASSWORD, never a flag.
    Create {
        name: String,
        /// scram-sha-256 or scram-sha-512.
        #[arg(long, default_value = "scram-sha-512")]
        mechanism: String,
        /// Read the new password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// PBKDF2 iterations (at least 4096).
        #[arg(long, default_value_t = ITERATIONS_MIN)]
        iterations: u32,
    },
    /// Delete a user: its connections lose their access at their next request.
    Delete { name: String },
    /// List the users of the metadata log (configured users are not listed).
    List,
}

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Add an ACL.
    Add(AclArgs),
    /// Remove exactly this ACL.
    Remove(AclArgs),
    /// List every ACL.
    List,
}

#[derive(Args, Debug)]
pub struct AclArgs {
    /// User:NAME, or User:* for everyone.
    #[arg(long)]
    principal: String,
    /// A topic name (or prefix with --prefixed; * for every topic).
    #[arg(long, group = "resource")]
    topic: Option<String>,
    /// A consumer group name (or prefix with --prefixed; * for every group).
    #[arg(long, group = "resource")]
    group: Option<String>,
    /// The cluster (user and ACL admin, describe-cluster, create topics).
    #[arg(long, group = "resource")]
    cluster: bool,
    /// read, write, create, delete, describe, alter or all.
    #[arg(long)]
    operation: String,
    /// A deny ACL (deny wins over any allow).
    #[arg(long)]
    deny: bool,
    /// The resource name is a prefix.
    #[arg(long)]
    prefixed: bool,
}

impl AclArgs {
    fn to_acl(&self) -> Result<Acl, String> {
        let mut acl = Acl::new();
        acl.principal = self.principal.clone();
        (acl.resource_type, acl.resource_name) = match (&self.topic, &self.group, self.cluster) {
            (Some(topic), None, false) => ("topic".to_string(), topic.clone()),
            (None, Some(group), false) => ("group".to_string(), group.clone()),
            (None, None, true) => ("cluster".to_string(), "odradek-cluster".to_string()),
            _ => return Err("name one resource: --topic T, --group G or --cluster".to_string()),
        };
        acl.pattern = if self.prefixed { "prefixed" } else { "literal" }.to_string();
        acl.operation = self.operation.to_ascii_lowercase();
        acl.permission = if self.deny { "deny" } else { "allow" }.to_string();
        Ok(acl)
    }
}

fn new_password(password_stdin: bool) -> Result<String, String> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|error| format!("reading the password from stdin: {error}"))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        std::env::var("ODRADEK_NEW_PASSWORD")
            .map_err(|_| "give the new password with --password-stdin or ODRADEK_NEW_PASSWORD".to_string())?
    };
    if password.is_empty() {
        return Err("an empty password".to_string());
    }
    Ok(password)
}

pub async fn user(bootstrap: &Bootstrap, command: UserCommand) -> Result<(), String> {
    let admin = bootstrap.admin()?;
    match command {
        UserCommand::Create { name, mechanism, password_stdin, iterations } => {
            let mechanism =
                Mechanism::parse(&mechanism).ok_or_else(|| format!("--mechanism {mechanism:?}: scram-sha-256 or scram-sha-512"))?;
            let password = new_password(password_stdin)?;
            admin.upsert_user(&name, &password, mechanism, iterations).await.map_err(explain)?;
            say!("user {name} ({}) created", mechanism.name());
        }
        UserCommand::Delete { name } => {
            admin.delete_user(&name).await.map_err(explain)?;
            say!("user {name} deleted");
        }
        UserCommand::List => {
            for (name, mechanism, iterations) in admin.list_users().await.map_err(explain)? {
                say!("{name}\t{mechanism}\t{iterations} iterations");
            }
        }
    }
    Ok(())
}

pub async fn acl(bootstrap: &Bootstrap, command: AclCommand) -> Result<(), String> {
    let admin = bootstrap.admin()?;
    match command {
        AclCommand::Add(args) => {
            admin.create_acl(args.to_acl()?).await.map_err(explain)?;
            say!("ACL added");
        }
        AclCommand::Remove(args) => {
            admin.delete_acl(args.to_acl()?).await.map_err(explain)?;
            say!("ACL removed");
        }
        AclCommand::List => {
            for acl in admin.list_acls().await.map_err(explain)? {
                say!(
                    "{}\t{}\t{}:{}\t{}\t{}",
                    acl.principal,
                    acl.permission,
                    acl.resource_type,
                    acl.resource_name,
                    acl.pattern,
                    acl.operation
                );
            }
        }
    }
    Ok(())
}
