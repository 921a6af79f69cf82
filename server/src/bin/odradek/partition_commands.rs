//! `odradek partition`: operations on one partition (issue 15): hand its leadership to another
//! replica on demand.

use clap::Subcommand;

use crate::client_commands::{explain, Bootstrap};
use crate::output::say;

#[derive(Subcommand, Debug)]
pub enum PartitionCommand {
    /// Hand a partition's leadership to another caught-up voter and wait until it leads. The
    /// controller's balancing gives it back to the preferred replica (the first of the
    /// partition's replicas) at its next pass; `topic reassign` changes the preferred one.
    TransferLeader {
        topic: String,
        partition: u32,
        /// The node to lead.
        #[arg(long)]
        to: u64,
    },
}

pub async fn partition(bootstrap: &Bootstrap, command: PartitionCommand) -> Result<(), String> {
    let admin = bootstrap.admin()?;
    match command {
        PartitionCommand::TransferLeader { topic, partition, to } => {
            admin.transfer_leader(&topic, partition, to).await.map_err(explain)?;
            say!("Node {to} leads {topic}/{partition}.");
        }
    }
    Ok(())
}
