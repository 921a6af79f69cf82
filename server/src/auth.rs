//! Who may do what (issue 19): the principal a connection acts as ([`Principal`]), Kafka's ACL
//! model and its decisions ([`acl`]), and the settings that turn them on ([`AuthSettings`]).
//!
//! A connection starts as [`Principal::Anonymous`]. It becomes `User:NAME` by a SASL/SCRAM
//! exchange (`odradek_client::scram`, driven by [`crate::net`]) or, on a TLS listener, from its
//! client certificate's common name ([`Principal::from_certificate_cn`], the one function the
//! TLS layer calls). Authentication decides the principal; authorization ([`acl::authorize`])
//! decides each request, from the ACLs in the metadata log ([`crate::meta`]) and the configured
//! super users.
//!
//! Invariants:
//! - With authorization off every request is allowed, whoever sends it (a plain server and the
//!   playground stay open, as before issue 19).
//! - With authorization on, a request is allowed only to a super user or by a matching allow
//!   ACL with no matching deny ACL (deny wins; nothing is allowed by default).
//! - With SASL required, a connection that has not authenticated gets AUTHENTICATION_FAILED for
//!   every request but Hello and SaslAuthenticate.

pub mod acl;

use std::collections::{BTreeMap, BTreeSet};

use odradek_client::scram::{Credential, Mechanism, ITERATIONS_MIN};
use serde::Deserialize;

/// The longest user name (Kafka has no limit; ours keeps SCRAM messages and ACLs small).
pub const USER_NAME_BYTES_MAX: usize = 255;

/// Who a connection acts as.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Principal {
    /// Not authenticated (Kafka's `User:ANONYMOUS`).
    Anonymous,
    /// Authenticated by SCRAM or by a client certificate.
    User(String),
}

impl Principal {
    /// The principal of a verified client certificate whose subject common name is `cn`
    /// (Kafka's `ssl.principal.mapping.rules` extracting the CN): `User:CN`. The TLS layer calls
    /// this once the handshake verified the chain; an empty or unprintable name is refused.
    pub fn from_certificate_cn(cn: &str) -> Result<Principal, String> {
        validate_user_name(cn).map_err(|reason| format!("client certificate common name: {reason}"))?;
        Ok(Principal::User(cn.to_string()))
    }

    /// The user name, `ANONYMOUS` for an unauthenticated connection.
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => "ANONYMOUS",
            Principal::User(name) => name,
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "User:{}", self.name())
    }
}

/// A user name: 1..=[`USER_NAME_BYTES_MAX`] bytes, printable, no `*` (the ACL wildcard) and not
/// `ANONYMOUS`.
pub fn validate_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > USER_NAME_BYTES_MAX {
        return Err(format!("a user name of {} bytes (1..={USER_NAME_BYTES_MAX})", name.len()));
    }
    if name.chars().any(|c| c.is_control() || c == '*') {
        return Err(format!("user name {name:?} has a control character or '*'"));
    }
    if name == "ANONYMOUS" {
        return Err("ANONYMOUS is the name of unauthenticated connections".to_string());
    }
    Ok(())
}

/// The `[auth]` section: all off by default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Clients must authenticate with SASL/SCRAM before any other request (`--auth scram`).
    pub sasl: bool,
    /// Requests are checked against the ACLs (`--authorization on`).
    pub authorization: bool,
    /// Principals (`User:NAME`) allowed everything, whatever the ACLs say.
    pub super_users: BTreeSet<String>,
    /// Users every node knows from its configuration (`[auth.users]` NAME = PASSWORD, or
    /// `odradek server --users-file F` with `NAME:PASSWORD` lines), besides the metadata log's:
    /// the bootstrap (the first administrator) and the nodes' own user. A metadata-log user of
    /// the same name does not replace one of these.
    pub users: BTreeMap<String, Secret>,
    /// The user (of `users`) a node authenticates as when it relays a request to another node;
    /// it must be a super user. Required when `sasl` is on.
    pub inter_node_user: Option<String>,
}

/// A password: never printed (`Debug` shows `***`), so a logged config leaks none.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl AuthSettings {
    /// Checks the settings hang together.
    pub fn validate(&self) -> Result<(), String> {
        for user in &self.super_users {
            if !user.starts_with("User:") {
                return Err(format!("super user {user:?} is not of the form User:NAME"));
            }
        }
        for name in self.users.keys() {
            validate_user_name(name).map_err(|reason| format!("[auth.users]: {reason}"))?;
        }
        if self.authorization && !self.sasl {
            // Relays between nodes log in by SCRAM as inter_node_user. A client may be someone
            // by its TLS certificate instead (mutual TLS, `--tls-client-ca`), beside SCRAM.
            return Err("[auth] authorization = true needs sasl = true (principals come from SCRAM)".to_string());
        }
        if self.sasl {
            let Some(user) = &self.inter_node_user else {
                return Err("[auth] sasl = true needs inter_node_user (a user of users_file, a super user)".to_string());
            };
            if !self.users.contains_key(user) {
                return Err(format!("inter_node_user {user:?} has no password in [auth.users] (or --users-file)"));
            }
            if !self.super_users.contains(&format!("User:{user}")) {
                return Err(format!("inter_node_user {user:?} must be a super user (User:{user} in super_users)"));
            }
        }
        Ok(())
    }

    /// True when `principal` is a configured super user.
    pub fn is_super_user(&self, principal: &Principal) -> bool {
        matches!(principal, Principal::User(_)) && self.super_users.contains(&principal.to_string())
    }
}

/// A node's authentication state: its settings and the SCRAM credentials of its configured
/// users (derived once at start; metadata-log users are looked up in the replicated state).
#[derive(Debug)]
pub struct NodeAuth {
    pub settings: AuthSettings,
    configured: BTreeMap<(String, Mechanism), Credential>,
}

impl NodeAuth {
    /// Derives both mechanisms' credentials of every configured user (PBKDF2 at
    /// [`ITERATIONS_MIN`], a fresh salt each: a few milliseconds per user, once).
    pub fn new(settings: AuthSettings) -> NodeAuth {
        let mut configured = BTreeMap::new();
        for (name, password) in &settings.users {
            for mechanism in [Mechanism::Sha256, Mechanism::Sha512] {
                configured.insert((name.clone(), mechanism), Credential::generate(mechanism, &password.0, ITERATIONS_MIN));
            }
        }
        NodeAuth { settings, configured }
    }

    /// The credential of a configured user, if `name` is one.
    pub fn configured_user(&self, name: &str, mechanism: Mechanism) -> Option<&Credential> {
        self.configured.get(&(name.to_string(), mechanism))
    }

    /// (user, password) a node relays requests as, when SASL is on.
    pub fn inter_node_login(&self) -> Option<(&str, &str)> {
        if !self.settings.sasl {
            return None;
        }
        let user = self.settings.inter_node_user.as_deref()?;
        Some((user, self.settings.users.get(user)?.0.as_str()))
    }
}

/// Parses a users file: `NAME:PASSWORD` per line; blank lines and `#` comments skipped.
pub fn parse_users_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut users = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, password)) = line.split_once(':') else {
            return Err(format!("line {}: expected NAME:PASSWORD", number + 1));
        };
        validate_user_name(name).map_err(|reason| format!("line {}: {reason}", number + 1))?;
        if password.is_empty() {
            return Err(format!("line {}: user {name:?} has an empty password", number + 1));
        }
        users.push((name.to_string(), password.to_string()));
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_common_name_becomes_a_user_principal() {
        assert_eq!(Principal::from_certificate_cn("alice").unwrap().to_string(), "User:alice");
        assert!(Principal::from_certificate_cn("").is_err());
        assert!(Principal::from_certificate_cn("a\nb").is_err());
        assert!(Principal::from_certificate_cn("*").is_err());
        assert_eq!(Principal::Anonymous.to_string(), "User:ANONYMOUS");
    }

    #[test]
    fn sasl_needs_an_inter_node_super_user_with_a_password() {
        let mut settings = AuthSettings { sasl: true, ..AuthSettings::default() };
        assert!(settings.validate().is_err());
        settings.inter_node_user = Some("node".into());
        assert!(settings.validate().unwrap_err().contains("no password"));
        settings.users.insert("node".into(), Secret("pw".into()));
        assert!(settings.validate().unwrap_err().contains("super user"));
        settings.super_users.insert("User:node".into());
        settings.validate().unwrap();
        assert!(settings.is_super_user(&Principal::User("node".into())));
        assert!(!settings.is_super_user(&Principal::Anonymous));
        assert_eq!(format!("{settings:?}").matches("pw").count(), 0, "no password in Debug: {settings:?}");
        let auth = NodeAuth::new(settings);
        assert_eq!(auth.inter_node_login(), Some(("node", "pw")));
        assert!(auth.configured_user("node", Mechanism::Sha512).is_some_and(Credential::is_well_formed));
        assert!(auth.configured_user("other", Mechanism::Sha256).is_none());
    }

    #[test]
    fn users_files_name_a_password_per_user() {
        let users = parse_users_file("# bootstrap\nadmin:a:b\n\nnode:pw\n").unwrap();
        assert_eq!(users, vec![("admin".into(), "a:b".into()), ("node".into(), "pw".into())]);
        assert!(parse_users_file("admin\n").is_err());
        assert!(parse_users_file("admin:\n").is_err());
    }
}
