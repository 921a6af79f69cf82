//! A node that joins a running cluster (`odradek server --join ADDR`, issue 15), before it
//! starts: it asks a member (any of `ServerConfig::join`) to record it with its identity (id,
//! data-directory incarnation) and addresses, and learns the bootstrap member list, the
//! metadata group's initial voters, which its metadata replica must start from (a replica's
//! conf changes apply on top of its group's bootstrap configuration).
//!
//! The answer is kept in the data directory ([`BOOTSTRAP_FILE`], written whole through a
//! temporary file and a rename): a restart reads it and needs no member up to start, as a
//! bootstrap member needs only its flags. A wiped directory has no such file and asks again,
//! under its new incarnation (refused unless `--replace`: the identity rule, `meta::members`).
//!
//! A bootstrap member (`--node` lists) that was decommissioned and removed comes back the same
//! way, as in KRaft: `--join` with an empty data directory (a new incarnation; its old
//! directory is refused before asking). The controller accepts its id only once the metadata
//! says it was removed; the bootstrap list it answers then names this node, whose metadata
//! replica starts from that list (the group's true initial voters) with an empty log, so it
//! votes in nothing until caught up, and the log's conf changes leave it a learner (R8 d).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use odradek_log::{Disk, DiskFile, OpenMode};

use odradek_client::scram::Mechanism;
use odradek_client::tls::{ClientTls, Pem};
use odradek_client::wire::proto::JoinClusterRequest;
use odradek_client::{Admin, ClusterConfig, ClusterSession};

use crate::config::{parse_member, Member, ServerConfig};

/// The bootstrap member list a joined node learned, one `ID=PEER/CLIENT` line per member.
pub const BOOTSTRAP_FILE: &str = "odradek.bootstrap";
/// How long a joining node keeps asking while no member answers (retriable failures only).
pub const JOIN_WAIT_MAX: Duration = Duration::from_secs(120);
/// The longest bootstrap file read (a line per member, at most `CLUSTER_NODES_MAX` of them).
const BOOTSTRAP_FILE_BYTES_MAX: u64 = 64 * 1024;
/// Pause between two rounds of asking.
const JOIN_RETRY_INTERVAL: Duration = Duration::from_millis(500);

async fn read_bootstrap<D: Disk>(disk: &D, dir: &Path) -> Result<Option<Vec<Member>>, String> {
    let path = dir.join(BOOTSTRAP_FILE);
    let file = match disk.open(&path, OpenMode::Existing).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    let len = file.len().await.map_err(|error| format!("{}: {error}", path.display()))?;
    if len > BOOTSTRAP_FILE_BYTES_MAX {
        return Err(format!("{}: {len} bytes, more than a bootstrap list; move it away to join again", path.display()));
    }
    let bytes = file.read_at(0, len as usize).await.map_err(|error| format!("{}: {error}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|error| format!("{}: {error}", path.display()))?;
    let members: Vec<Member> = text
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| parse_member(line).map_err(|error| format!("{}: {error}", path.display())))
        .collect::<Result<_, _>>()?;
    if members.is_empty() {
        return Err(format!("{} names no member; move it away to join again", path.display()));
    }
    Ok(Some(members))
}

/// Writes the list whole: a temporary file, synced, renamed over [`BOOTSTRAP_FILE`], the
/// directory synced (a crash leaves the old file or the new one, never part of one).
async fn write_bootstrap<D: Disk>(disk: &D, dir: &Path, members: &[Member]) -> std::io::Result<()> {
    let mut text = String::from("# The bootstrap members of the cluster this node joined (odradek server --join).\n");
    for member in members {
        text.push_str(&format!("{}={}/{}\n", member.id, member.peer, member.client));
    }
    disk.create_dir_all(dir).await?;
    let temporary = dir.join(format!("{BOOTSTRAP_FILE}.tmp"));
    let file = disk.open(&temporary, OpenMode::CreateOrOpen).await?;
    file.set_len(0).await?;
    file.write_at(0, Bytes::from(text.into_bytes())).await?;
    file.sync_data().await?;
    drop(file);
    disk.rename(&temporary, &dir.join(BOOTSTRAP_FILE)).await?;
    disk.sync_dir(dir).await
}

/// How a joining node reaches the members' client listeners: as the nodes' own user where SASL
/// is on (`[auth] inter_node_user`, as relays log in), and over TLS where the listeners speak it,
/// trusting the cluster CA and presenting this node's peer certificate (`[tls] peer_*`).
fn join_client_config(config: &ServerConfig) -> Result<ClusterConfig, String> {
    let mut client = ClusterConfig::default();
    if config.auth.sasl {
        let user = config.auth.inter_node_user.as_deref().ok_or("--join with --auth scram needs --inter-node-user")?;
        let password = config.auth.users.get(user).ok_or_else(|| format!("--join: inter-node user {user:?} has no password"))?;
        client = client.with_sasl(Mechanism::Sha512, user, &password.0);
    }
    if config.tls.clients() {
        let ca = config.tls.peer_ca.clone().ok_or("--join to TLS listeners needs the cluster CA ([tls] peer_ca)")?;
        let mut tls = ClientTls::new(Pem::File(ca));
        if let (Some(cert), Some(key)) = (&config.tls.peer_cert, &config.tls.peer_key) {
            tls.identity = Some((Pem::File(cert.clone()), Pem::File(key.clone())));
        }
        client.connection.tls = Some(tls);
    }
    Ok(client)
}

/// Asks the cluster to record this node; the bootstrap members it answers with.
async fn ask(config: &ServerConfig) -> Result<Vec<Member>, String> {
    let me = config.me();
    let seeds: Vec<String> = config.join.iter().map(ToString::to_string).collect();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    let mut request = JoinClusterRequest::new();
    request.node_id = config.id;
    request.incarnation = config.incarnation;
    request.peer_address = me.peer.to_string();
    request.client_address = me.client.to_string();
    request.kafka_address = config.kafka_advertised().map(|address| address.to_string()).unwrap_or_default();
    request.replace = config.join_replace;
    let deadline = tokio::time::Instant::now() + JOIN_WAIT_MAX;
    let joined = loop {
        let session = ClusterSession::new(&seeds, join_client_config(config)?);
        let admin = Admin::with_cluster(session.map_err(|error| format!("--join {seeds:?}: {error}"))?);
        match admin.join_cluster(request.clone()).await {
            Ok(joined) => break joined,
            Err(error) if error.is_definite() && error.code().is_some() => {
                return Err(format!("the cluster refused node {} joining: {error}", config.id));
            }
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("no member of {seeds:?} recorded node {} joining within {JOIN_WAIT_MAX:?}: {error}", config.id));
            }
            Err(error) => {
                tracing::info!(%error, "joining the cluster: no answer yet; asking again");
                tokio::time::sleep(JOIN_RETRY_INTERVAL).await;
            }
        }
    };
    let members: Vec<Member> = joined
        .bootstrap
        .iter()
        .map(|member| {
            let text = format!("{}={}/{}", member.node_id, member.peer_address, member.client_address);
            parse_member(&text).map_err(|error| format!("the cluster answered a bad bootstrap member: {error}"))
        })
        .collect::<Result<_, _>>()?;
    if members.is_empty() {
        return Err("the cluster answered an empty bootstrap list".to_string());
    }
    // The list names this node when it is a bootstrap member that was decommissioned and
    // removed: the controller accepts its id only then (`request::membership`).
    Ok(members)
}

/// A data directory that is not a new incarnation and holds no [`BOOTSTRAP_FILE`] was a
/// bootstrap member's (a joining node writes that file before it runs, and a new directory is
/// *joining* until it has joined, `data_dir`): a node never joins with it. A removed node comes
/// back only under a new identity (R8 d, F-M3, as in KRaft): its old log and votes are gone
/// with its membership.
fn check_not_a_bootstrap_directory(config: &ServerConfig) -> Result<(), String> {
    if config.data_dir_new {
        return Ok(());
    }
    Err(format!(
        "node {}'s data directory {} holds a bootstrap member's state (it is not new and has no {BOOTSTRAP_FILE}): a node \
         joins (--join) only with an empty data directory, under a new identity; a decommissioned and removed bootstrap \
         member rejoins with its data directory emptied",
        config.id,
        config.data_dir.display()
    ))
}

/// Joins the running cluster (module documentation): on return `config.nodes` lists the
/// bootstrap members and this node. `disk` holds the data directory (the simulator's disks
/// too: a simulated node joins through this same path).
pub async fn join_cluster<D: Disk>(config: &mut ServerConfig, disk: &D) -> Result<(), String> {
    assert!(config.is_joining_member(), "only a node started with --join joins");
    if config.nodes.len() != 1 || config.nodes[0].id != config.id {
        return Err("with --join, --node names this node only (ID=PEER/CLIENT): the cluster tells it the other members".into());
    }
    let members = match read_bootstrap(disk, &config.data_dir).await? {
        Some(members) => {
            tracing::info!(bootstrap = ?members.iter().map(|m| m.id).collect::<Vec<_>>(), "joined before: bootstrap members from {BOOTSTRAP_FILE}");
            members
        }
        None => {
            check_not_a_bootstrap_directory(config)?;
            let members = ask(config).await?;
            write_bootstrap(disk, &config.data_dir, &members).await.map_err(|error| format!("writing {BOOTSTRAP_FILE}: {error}"))?;
            tracing::info!(node = config.id, bootstrap = ?members.iter().map(|m| m.id).collect::<Vec<_>>(), "the cluster recorded this node joining");
            members
        }
    };
    // The metadata group's initial voters are the bootstrap members, this node among them if it
    // is a removed bootstrap member rejoining (its own entry is the one it starts with now).
    config.join_bootstrap = members.iter().map(|member| member.id).collect();
    let me = config.id;
    config.nodes.extend(members.into_iter().filter(|member| member.id != me));
    config.validate().map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bootstrap_list_survives_in_the_data_directory() {
        let disk = odradek_log::SimDisk::new(1);
        let dir = Path::new("/data");
        assert_eq!(read_bootstrap(&disk, dir).await.unwrap(), None, "not joined yet");
        let members =
            vec![parse_member("1=127.0.0.1:25101/127.0.0.1:25201").unwrap(), parse_member("2=127.0.0.1:25102/127.0.0.1:25202").unwrap()];
        write_bootstrap(&disk, dir, &members).await.unwrap();
        assert_eq!(read_bootstrap(&disk, dir).await.unwrap(), Some(members.clone()));
        // Durable: a power loss right after keeps it (the rename and the directory were synced).
        disk.crash(odradek_log::CrashMode::PowerLoss);
        assert_eq!(read_bootstrap(&disk, dir).await.unwrap(), Some(members.clone()));
        // A shorter list written over a longer one leaves nothing of the old one.
        write_bootstrap(&disk, dir, &members[..1]).await.unwrap();
        assert_eq!(read_bootstrap(&disk, dir).await.unwrap(), Some(members[..1].to_vec()));
        write_bootstrap(&disk, dir, &[]).await.unwrap();
        assert!(read_bootstrap(&disk, dir).await.unwrap_err().contains("names no member"));
    }

    #[test]
    fn a_joining_node_starts_from_the_bootstrap_voters_not_itself() {
        let me = parse_member("4=127.0.0.1:25104/127.0.0.1:25204").unwrap();
        let mut config = ServerConfig::new(4, "/tmp/unused", vec![me]);
        config.join = vec!["127.0.0.1:25201".parse().unwrap()];
        config.nodes.push(parse_member("1=127.0.0.1:25101/127.0.0.1:25201").unwrap());
        config.nodes.push(parse_member("2=127.0.0.1:25102/127.0.0.1:25202").unwrap());
        config.validate().unwrap();
        assert_eq!(config.metadata_voters_initial(), vec![1, 2], "its metadata replica starts from the bootstrap voters");
        config.join.clear();
        assert_eq!(config.metadata_voters_initial(), vec![1, 2, 4], "a bootstrap member is one of them");
    }

    #[test]
    fn a_removed_bootstrap_member_rejoins_from_the_true_bootstrap_voters() {
        // Node 2 was a bootstrap member of {1, 2, 3}, was removed, and rejoins with new addresses.
        let me = parse_member("2=127.0.0.1:25112/127.0.0.1:25212").unwrap();
        let mut config = ServerConfig::new(2, "/tmp/unused", vec![me.clone()]);
        config.join = vec!["127.0.0.1:25201".parse().unwrap()];
        config.join_bootstrap = vec![3, 1, 2];
        config.nodes.push(parse_member("1=127.0.0.1:25101/127.0.0.1:25201").unwrap());
        config.nodes.push(parse_member("3=127.0.0.1:25103/127.0.0.1:25203").unwrap());
        config.validate().unwrap();
        assert_eq!(config.metadata_voters_initial(), vec![1, 2, 3], "the metadata group's initial voters, itself among them");
        assert_eq!(config.me(), &me, "it runs at the addresses it joined with");
        // Its old directory (not new, no bootstrap file) is refused before asking.
        config.data_dir_new = false;
        let refused = check_not_a_bootstrap_directory(&config).unwrap_err();
        assert!(refused.contains("empty data directory"), "{refused}");
        config.data_dir_new = true;
        check_not_a_bootstrap_directory(&config).unwrap();
    }
}
