//! The authorizer's rules as properties over random ACL sets (deny wins, super users pass,
//! nothing by default, prefixes, implied describe) and a few worked examples.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

fn on() -> AuthSettings {
    AuthSettings { authorization: true, super_users: ["User:root".to_string()].into(), ..AuthSettings::default() }
}

fn binding(
    principal: &str,
    resource_type: ResourceType,
    name: &str,
    pattern: PatternType,
    operation: Operation,
    permission: Permission,
) -> AclBinding {
    AclBinding { principal: principal.into(), resource_type, resource_name: name.into(), pattern, operation, permission }
}

const OPERATIONS: [Operation; 7] =
    [Operation::Read, Operation::Write, Operation::Create, Operation::Delete, Operation::Describe, Operation::Alter, Operation::All];
const REQUESTED: [Operation; 6] =
    [Operation::Read, Operation::Write, Operation::Create, Operation::Delete, Operation::Describe, Operation::Alter];

fn arb_binding() -> impl Strategy<Value = AclBinding> {
    (
        prop::sample::select(vec!["User:alice", "User:bob", "User:*"]),
        prop::sample::select(vec![ResourceType::Topic, ResourceType::Group]),
        prop::sample::select(vec!["t", "t1", "tx", "u", "*"]),
        prop::sample::select(vec![PatternType::Literal, PatternType::Prefixed]),
        prop::sample::select(OPERATIONS.to_vec()),
        prop::sample::select(vec![Permission::Allow, Permission::Deny]),
    )
        .prop_map(|(principal, resource_type, name, pattern, operation, permission)| {
            let pattern = if name == "*" { PatternType::Literal } else { pattern };
            binding(principal, resource_type, name, pattern, operation, permission)
        })
}

fn arb_request() -> impl Strategy<Value = (Principal, Operation, ResourceType, &'static str)> {
    (
        prop::sample::select(vec![Principal::User("alice".into()), Principal::User("bob".into()), Principal::Anonymous]),
        prop::sample::select(REQUESTED.to_vec()),
        prop::sample::select(vec![ResourceType::Topic, ResourceType::Group]),
        prop::sample::select(vec!["t", "t1", "tx", "u", "v"]),
    )
}

proptest! {
    #[test]
    fn a_matching_deny_wins_over_any_allow(
        acls in prop::collection::btree_set(arb_binding(), 0..12),
        (principal, operation, resource_type, name) in arb_request(),
    ) {
        let mut acls = acls;
        let holder = if principal == Principal::Anonymous { ANY_USER.to_string() } else { principal.to_string() };
        acls.insert(binding(&holder, resource_type, name, PatternType::Literal, operation, Permission::Deny));
        let refusal = authorize(&on(), &acls, &principal, operation, resource_type, name).unwrap_err();
        prop_assert!(refusal.denied);
        prop_assert!(refusal.to_string().contains(&principal.to_string()));
    }

    #[test]
    fn super_users_pass_and_authorization_off_allows_all(
        acls in prop::collection::btree_set(arb_binding(), 0..12),
        (_, operation, resource_type, name) in arb_request(),
    ) {
        prop_assert!(authorize(&on(), &acls, &Principal::User("root".into()), operation, resource_type, name).is_ok());
        let off = AuthSettings::default();
        prop_assert!(authorize(&off, &acls, &Principal::Anonymous, operation, resource_type, name).is_ok());
    }

    #[test]
    fn an_allow_never_refuses_and_a_deny_never_allows(
        acls in prop::collection::btree_set(arb_binding(), 0..12),
        extra in arb_binding(),
        (principal, operation, resource_type, name) in arb_request(),
    ) {
        let before = authorize(&on(), &acls, &principal, operation, resource_type, name).is_ok();
        let mut after_acls = acls.clone();
        after_acls.insert(extra.clone());
        let after = authorize(&on(), &after_acls, &principal, operation, resource_type, name).is_ok();
        match extra.permission {
            Permission::Allow => prop_assert!(after || !before, "adding {extra} refused what was allowed"),
            Permission::Deny => prop_assert!(!after || before, "adding {extra} allowed what was refused"),
        }
    }

    #[test]
    fn a_prefixed_binding_matches_exactly_the_names_it_prefixes(prefix in "[a-c]{1,3}", name in "[a-c]{1,4}") {
        let acls: BTreeSet<AclBinding> =
            [binding("User:alice", ResourceType::Topic, &prefix, PatternType::Prefixed, Operation::Write, Permission::Allow)].into();
        let alice = Principal::User("alice".into());
        let allowed = authorize(&on(), &acls, &alice, Operation::Write, ResourceType::Topic, &name).is_ok();
        prop_assert_eq!(allowed, name.starts_with(&prefix));
        let literal: BTreeSet<AclBinding> =
            [binding("User:alice", ResourceType::Topic, &prefix, PatternType::Literal, Operation::Write, Permission::Allow)].into();
        prop_assert_eq!(authorize(&on(), &literal, &alice, Operation::Write, ResourceType::Topic, &name).is_ok(), name == prefix);
    }
}

#[test]
fn nothing_is_allowed_by_default() {
    let acls = BTreeSet::new();
    for operation in REQUESTED {
        let refusal = authorize(&on(), &acls, &Principal::User("alice".into()), operation, ResourceType::Topic, "t").unwrap_err();
        assert!(!refusal.denied);
        assert_eq!(refusal.to_string(), format!("principal User:alice is not authorized to {operation} topic \"t\": no ACL allows it"));
    }
}

#[test]
fn read_and_write_imply_describe_but_a_describe_deny_still_wins() {
    let alice = Principal::User("alice".into());
    for implying in [Operation::Read, Operation::Write, Operation::Delete, Operation::Alter] {
        let mut acls: BTreeSet<AclBinding> =
            [binding("User:alice", ResourceType::Topic, "t", PatternType::Literal, implying, Permission::Allow)].into();
        assert!(authorize(&on(), &acls, &alice, Operation::Describe, ResourceType::Topic, "t").is_ok(), "{implying}");
        acls.insert(binding("User:*", ResourceType::Topic, "t", PatternType::Literal, Operation::Describe, Permission::Deny));
        assert!(authorize(&on(), &acls, &alice, Operation::Describe, ResourceType::Topic, "t").is_err(), "{implying}");
    }
    let acls: BTreeSet<AclBinding> =
        [binding("User:alice", ResourceType::Topic, "t", PatternType::Literal, Operation::Describe, Permission::Allow)].into();
    assert!(authorize(&on(), &acls, &alice, Operation::Read, ResourceType::Topic, "t").is_err(), "describe implies nothing");
}

#[test]
fn the_wildcard_principal_and_resource_match_everyone_and_everything_of_the_type() {
    let acls: BTreeSet<AclBinding> =
        [binding(ANY_USER, ResourceType::Topic, "*", PatternType::Literal, Operation::Read, Permission::Allow)].into();
    assert!(authorize(&on(), &acls, &Principal::Anonymous, Operation::Read, ResourceType::Topic, "any").is_ok());
    assert!(authorize(&on(), &acls, &Principal::Anonymous, Operation::Read, ResourceType::Group, "any").is_err());
}

#[test]
fn idempotent_producers_need_write_on_some_topic() {
    let alice = Principal::User("alice".into());
    let mut acls: BTreeSet<AclBinding> = BTreeSet::new();
    assert!(!allows_any(&on(), &acls, &alice, Operation::Write, ResourceType::Topic));
    acls.insert(binding("User:alice", ResourceType::Topic, "t", PatternType::Prefixed, Operation::Write, Permission::Allow));
    assert!(allows_any(&on(), &acls, &alice, Operation::Write, ResourceType::Topic));
    acls.insert(binding("User:alice", ResourceType::Topic, "t", PatternType::Literal, Operation::Write, Permission::Deny));
    assert!(!allows_any(&on(), &acls, &alice, Operation::Write, ResourceType::Topic), "the one allowed resource is denied");
}

#[test]
fn bindings_are_validated_before_they_are_stored() {
    let good = binding("User:alice", ResourceType::Topic, "t", PatternType::Literal, Operation::Read, Permission::Allow);
    good.validate().unwrap();
    let mut bad = good.clone();
    bad.principal = "Group:x".into();
    assert!(bad.validate().is_err());
    let mut bad = good.clone();
    bad.resource_type = ResourceType::Cluster;
    assert!(bad.validate().is_err());
    let mut bad = good;
    bad.resource_name = "*".into();
    bad.pattern = PatternType::Prefixed;
    assert!(bad.validate().is_err());
}
