//! Kafka's ACL model, sans-IO: bindings ([`AclBinding`]) of a principal, a resource pattern, an
//! operation and allow/deny, and the decision for one request ([`authorize`]).
//!
//! Rules (Kafka's `AclAuthorizer`):
//! - a super user is allowed everything;
//! - a binding matches a principal when it names it or `User:*`; a resource when its type is the
//!   request's and its name is the resource's (literal), `*` (literal: every resource of the
//!   type), or a prefix of it (prefixed);
//! - a matching deny binding for the operation (or `All`) refuses, whatever allows (deny wins);
//! - else a matching allow binding for the operation (or `All`) allows; `Describe` is also
//!   allowed by an allow of `Read`, `Write`, `Delete` or `Alter` (implied describe);
//! - else refused: nothing is allowed by default.
//!
//! Cost: a decision scans every binding (a few thousand at most, [`crate::meta::ACLS_MAX`]),
//! microseconds per request; an index by resource would come first if that shows in a profile.

use std::collections::BTreeSet;

use super::{AuthSettings, Principal};

/// What a binding protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
}

/// How a binding's resource name matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PatternType {
    Literal,
    Prefixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Read,
    Write,
    Create,
    Delete,
    Describe,
    Alter,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Allow,
    Deny,
}

/// The name of the one cluster resource (Kafka's `kafka-cluster`).
pub const CLUSTER_RESOURCE: &str = "odradek-cluster";
/// The principal wildcard.
pub const ANY_USER: &str = "User:*";

/// One ACL.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    /// `User:NAME` or [`ANY_USER`].
    pub principal: String,
    pub resource_type: ResourceType,
    /// A literal name, `*` (literal, every resource of the type) or a prefix.
    pub resource_name: String,
    pub pattern: PatternType,
    pub operation: Operation,
    pub permission: Permission,
}

macro_rules! names {
    ($type:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $type {
            pub fn name(self) -> &'static str {
                match self { $($type::$variant => $name),* }
            }
            pub fn parse(name: &str) -> Option<$type> {
                match name.to_ascii_lowercase().as_str() { $($name => Some($type::$variant),)* _ => None }
            }
        }
        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

names!(ResourceType { Topic => "topic", Group => "group", Cluster => "cluster" });
names!(PatternType { Literal => "literal", Prefixed => "prefixed" });
names!(Operation {
    Read => "read", Write => "write", Create => "create", Delete => "delete",
    Describe => "describe", Alter => "alter", All => "all",
});
names!(Permission { Allow => "allow", Deny => "deny" });

impl AclBinding {
    /// Checks a binding before it is stored: a `User:` principal, a non-empty resource name (the
    /// cluster's is [`CLUSTER_RESOURCE`]), no prefixed wildcard.
    pub fn validate(&self) -> Result<(), String> {
        let Some(name) = self.principal.strip_prefix("User:") else {
            return Err(format!("principal {:?} is not User:NAME or User:*", self.principal));
        };
        if name != "*" {
            super::validate_user_name(name)?;
        }
        if self.resource_name.is_empty() || self.resource_name.len() > 255 {
            return Err(format!("a resource name of {} bytes (1..=255)", self.resource_name.len()));
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_RESOURCE {
            return Err(format!("the cluster resource is named {CLUSTER_RESOURCE:?}"));
        }
        if self.pattern == PatternType::Prefixed && self.resource_name == "*" {
            return Err("a prefixed pattern of \"*\"; use a literal \"*\" for every resource".to_string());
        }
        Ok(())
    }

    fn matches_principal(&self, principal: &Principal) -> bool {
        self.principal == ANY_USER || (matches!(principal, Principal::User(_)) && self.principal == principal.to_string())
    }

    fn matches_resource(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern {
                PatternType::Literal => self.resource_name == name || self.resource_name == "*",
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }
}

impl std::fmt::Display for AclBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} on {} {:?} ({})",
            self.permission, self.principal, self.operation, self.resource_type, self.resource_name, self.pattern
        )
    }
}

/// Why a request was refused: the principal and what it lacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub principal: String,
    pub operation: Operation,
    pub resource_type: ResourceType,
    pub resource_name: String,
    /// A deny binding matched (else no allow did).
    pub denied: bool,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = if self.denied { "a deny ACL matches" } else { "no ACL allows it" };
        write!(
            f,
            "principal {} is not authorized to {} {} {:?}: {why}",
            self.principal, self.operation, self.resource_type, self.resource_name
        )
    }
}

/// The operations whose allow also allows `operation` (besides itself and `All`).
fn implying(operation: Operation) -> &'static [Operation] {
    match operation {
        Operation::Describe => &[Operation::Read, Operation::Write, Operation::Delete, Operation::Alter],
        _ => &[],
    }
}

/// May `principal` do `operation` on the resource? With authorization off, always.
pub fn authorize(
    settings: &AuthSettings,
    acls: &BTreeSet<AclBinding>,
    principal: &Principal,
    operation: Operation,
    resource_type: ResourceType,
    name: &str,
) -> Result<(), Refusal> {
    assert_ne!(operation, Operation::All, "a request asks for one operation");
    if !settings.authorization || settings.is_super_user(principal) {
        return Ok(());
    }
    let matching = || acls.iter().filter(move |acl| acl.matches_principal(principal) && acl.matches_resource(resource_type, name));
    let refusal = |denied| Refusal { principal: principal.to_string(), operation, resource_type, resource_name: name.to_string(), denied };
    let exact = |acl: &&AclBinding| acl.operation == operation || acl.operation == Operation::All;
    if matching().any(|acl| acl.permission == Permission::Deny && exact(&acl)) {
        return Err(refusal(true));
    }
    let allowed =
        matching().any(|acl| acl.permission == Permission::Allow && (exact(&acl) || implying(operation).contains(&acl.operation)));
    if allowed {
        Ok(())
    } else {
        Err(refusal(false))
    }
}

/// True when some allow binding of `principal` (or `User:*`) on any resource of the type grants
/// `operation` and no deny of it covers the whole type (Kafka's rule for idempotent producers:
/// write on any topic).
pub fn allows_any(
    settings: &AuthSettings,
    acls: &BTreeSet<AclBinding>,
    principal: &Principal,
    operation: Operation,
    resource_type: ResourceType,
) -> bool {
    if !settings.authorization || settings.is_super_user(principal) {
        return true;
    }
    acls.iter().any(|acl| {
        acl.permission == Permission::Allow
            && acl.resource_type == resource_type
            && (acl.operation == operation || acl.operation == Operation::All)
            && acl.matches_principal(principal)
            && authorize(settings, acls, principal, operation, resource_type, &acl.resource_name).is_ok()
    })
}

#[cfg(test)]
mod tests;
