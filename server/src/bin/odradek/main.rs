//! `odradek`: one binary for running nodes and for working with a cluster.
//!
//! Run `odradek playground` for a local 3-node cluster, then `odradek produce` /
//! `odradek consume` against it (they default to the playground's address).

mod bench;
mod bench_group;
mod client_commands;
mod group_commands;
mod node_commands;
mod output;
mod partition_commands;
mod security_commands;
mod tls_commands;
mod topic_setup;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::note;

/// Where client commands connect when `--bootstrap` is not given: the playground's first node.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

#[derive(Parser, Debug)]
#[command(name = "odradek", version, about = "A replicated, partitioned event log", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node of a cluster.
    Server(Box<node_commands::ServerArgs>),
    /// Run a local 3-node cluster on loopback with a demo topic, ready to produce and consume.
    Playground(node_commands::PlaygroundArgs),
    /// Create, list, describe and delete topics.
    Topic {
        #[command(flatten)]
        bootstrap: client_commands::Bootstrap,
        #[command(subcommand)]
        command: client_commands::TopicCommand,
    },
    /// Send stdin lines as records (key:value with --key-separator).
    Produce {
        #[command(flatten)]
        bootstrap: client_commands::Bootstrap,
        #[command(flatten)]
        args: client_commands::ProduceArgs,
    },
    /// Print records of a topic (with --group: as a member of a consumer group, committing as it goes).
    Consume {
        #[command(flatten)]
        bootstrap: client_commands::Bootstrap,
        #[command(flatten)]
        args: client_commands::ConsumeArgs,
    },
    /// Consumer groups: list, describe (members, partitions, lag), reset offsets, delete.
    Group {
        #[command(flatten)]
        bootstrap: client_commands::Bootstrap,
        #[command(subcommand)]
        command: group_commands::GroupCommand,
    },
    /// One partition: hand its leadership to another replica.
    Partition {
        #[command(flatten)]
        bootstrap: client_commands::Bootstrap,
        #[command(subcommand)]
        command: partition_commands::PartitionCommand,
    },
    /// Cluster state: nodes, leaders, commit indexes, follower lag.
    Cluster {
        #[command(flatten)]
        bootstrap: client_commands::Bootstrap,
        #[command(subcommand)]
        command: client_commands::ClusterCommand,
    },
    /// Nodes of a running cluster: decommission one.
    Node {
        #[command(flatten)]
        bootstrap: client_commands::Bootstrap,
        #[command(subcommand)]
        command: client_commands::NodeCommand,
    },
    /// SCRAM users (authentication): create, delete, list.
    User {
        #[command(flatten)]
        bootstrap: client_commands::Bootstrap,
        #[command(subcommand)]
        command: security_commands::UserCommand,
    },
    /// ACLs (authorization): add, remove, list.
    Acl {
        #[command(flatten)]
        bootstrap: client_commands::Bootstrap,
        #[command(subcommand)]
        command: security_commands::AclCommand,
    },
    /// Load generators: throughput and latency percentiles.
    Bench {
        #[command(flatten)]
        bootstrap: client_commands::Bootstrap,
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Certificates for a TLS cluster (see README, "Security").
    Tls {
        #[command(subcommand)]
        command: tls_commands::TlsCommand,
    },
}

fn init_logging(default_filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("ODRADEK_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => {
            init_logging("info");
            node_commands::server(*args).await
        }
        Command::Playground(args) => {
            // Nodes starting one after another cannot reach each other for a moment; that is
            // expected here and not worth a warning on a new user's screen.
            init_logging("error");
            node_commands::playground(args).await
        }
        Command::Topic { bootstrap, command } => {
            init_logging("warn");
            client_commands::topic(&bootstrap, command).await
        }
        Command::Node { bootstrap, command } => {
            init_logging("warn");
            client_commands::node(&bootstrap, command).await
        }
        Command::Produce { bootstrap, args } => {
            init_logging("warn");
            client_commands::produce(&bootstrap, args).await
        }
        Command::Consume { bootstrap, args } => {
            init_logging("warn");
            client_commands::consume(&bootstrap, args).await
        }
        Command::Partition { bootstrap, command } => {
            init_logging("warn");
            partition_commands::partition(&bootstrap, command).await
        }
        Command::Group { bootstrap, command } => {
            init_logging("warn");
            group_commands::group(&bootstrap, command).await
        }
        Command::Cluster { bootstrap, command } => {
            init_logging("warn");
            client_commands::cluster(&bootstrap, command).await
        }
        Command::User { bootstrap, command } => {
            init_logging("warn");
            security_commands::user(&bootstrap, command).await
        }
        Command::Acl { bootstrap, command } => {
            init_logging("warn");
            security_commands::acl(&bootstrap, command).await
        }
        Command::Bench { bootstrap, command } => {
            init_logging("warn");
            bench::bench(&bootstrap, command).await
        }
        Command::Tls { command } => tls_commands::tls(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            note!("odradek: {error}");
            ExitCode::FAILURE
        }
    }
}
