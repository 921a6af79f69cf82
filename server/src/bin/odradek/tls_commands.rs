//! `odradek tls init DIR --nodes 1,2,3`: a cluster CA, one certificate per node, and a client
//! certificate, so a TLS cluster can be tried (and tested) without other tools; `odradek tls
//! issue DIR` signs a fresh certificate with that CA (rotation).
//!
//! Files: `ca.pem`/`ca.key` (keep the key offline in real use), `node-<id>.pem`/`.key` (DNS
//! names `node-<id>` and `localhost`, IP 127.0.0.1 and every `--host`; server and client auth,
//! so one file serves the client listener and both directions of peer links), and
//! `<client>.pem`/`.key` (DNS name `<client>`, client auth: the mTLS principal). Keys are
//! ECDSA P-256, written with mode 0600.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

use crate::output::say;

/// The CA's subject: the same when `issue` rebuilds the issuer from `ca.key`.
const CA_COMMON_NAME: &str = "odradek cluster CA";

#[derive(Subcommand, Debug)]
pub enum TlsCommand {
    /// Write a new CA, a certificate per node and a client certificate into DIR.
    Init {
        dir: PathBuf,
        /// Comma-separated node ids.
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<u64>,
        /// Extra DNS names or IP addresses the node certificates are valid for.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// The client certificate's name (its mTLS principal).
        #[arg(long, default_value = "client")]
        client: String,
        /// Replace files already in DIR.
        #[arg(long)]
        force: bool,
    },
    /// Sign a new certificate with DIR/ca.key: for one node (`--node`) or a client (`--client`).
    /// Existing files of that name are replaced (certificate rotation).
    Issue {
        dir: PathBuf,
        #[arg(long, conflicts_with = "client", required_unless_present = "client")]
        node: Option<u64>,
        #[arg(long)]
        client: Option<String>,
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

pub fn tls(command: TlsCommand) -> Result<(), String> {
    match command {
        TlsCommand::Init { dir, nodes, hosts, client, force } => {
            if nodes.is_empty() || nodes.contains(&0) {
                return Err("--nodes lists node ids, which start at 1".into());
            }
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            if !force && dir.join("ca.pem").exists() {
                return Err(format!("{} already holds a CA; use --force to replace it, or `odradek tls issue`", dir.display()));
            }
            let ca_key = KeyPair::generate().map_err(|e| e.to_string())?;
            let ca = ca_certificate(&ca_key)?;
            write(&dir.join("ca.pem"), &ca.pem())?;
            write(&dir.join("ca.key"), &ca_key.serialize_pem())?;
            for id in &nodes {
                issue_node(&dir, *id, &hosts, &ca, &ca_key)?;
            }
            issue_client(&dir, &client, &ca, &ca_key)?;
            say!("wrote ca.pem, ca.key, node-<id>.pem/.key for nodes {nodes:?}, {client}.pem/.key in {}", dir.display());
            Ok(())
        }
        TlsCommand::Issue { dir, node, client, hosts } => {
            let ca_key = read_key(&dir.join("ca.key"))?;
            let ca = ca_certificate(&ca_key)?;
            match (node, client) {
                (Some(id), _) => issue_node(&dir, id, &hosts, &ca, &ca_key)?,
                (None, Some(name)) => issue_client(&dir, &name, &ca, &ca_key)?,
                (None, None) => unreachable!("clap requires --node or --client"),
            }
            Ok(())
        }
    }
}

/// The CA certificate for `key` (rebuilt identically by `issue`: same subject, same key, so
/// what it signs verifies under the `ca.pem` that `init` wrote).
fn ca_certificate(key: &KeyPair) -> Result<Certificate, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.self_signed(key).map_err(|e| e.to_string())
}

fn issue_node(dir: &Path, id: u64, hosts: &[String], ca: &Certificate, ca_key: &KeyPair) -> Result<(), String> {
    let name = format!("node-{id}");
    let mut names = vec![name.clone(), "localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(hosts.iter().cloned());
    let usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    issue(dir, &name, names, usages, ca, ca_key)
}

fn issue_client(dir: &Path, name: &str, ca: &Certificate, ca_key: &KeyPair) -> Result<(), String> {
    issue(dir, name, vec![name.to_string()], vec![ExtendedKeyUsagePurpose::ClientAuth], ca, ca_key)
}

fn issue(
    dir: &Path,
    name: &str,
    names: Vec<String>,
    usages: Vec<ExtendedKeyUsagePurpose>,
    ca: &Certificate,
    ca_key: &KeyPair,
) -> Result<(), String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(names).map_err(|e| format!("{name}: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = usages;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let certificate = params.signed_by(&key, ca, ca_key).map_err(|e| e.to_string())?;
    // The key first: a reloading node that sees the new certificate finds its key in place.
    write(&dir.join(format!("{name}.key")), &key.serialize_pem())?;
    write(&dir.join(format!("{name}.pem")), &certificate.pem())?;
    say!("wrote {name}.pem and {name}.key in {}", dir.display());
    Ok(())
}

fn read_key(path: &Path) -> Result<KeyPair, String> {
    let pem = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    KeyPair::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `text` to `path` through a temporary file and a rename, so a reloading node never
/// reads half a file; keys get mode 0600 (when the file is new).
fn write(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if path.extension().is_some_and(|extension| extension == "key") {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
