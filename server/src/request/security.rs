//! User and ACL requests (issue 19): UpsertUser, DeleteUser, CreateAcl, DeleteAcl go to the
//! controller ([`super::admin::controller_request`] routes them here on the metadata group's
//! leader) and are answered from the outcome of their metadata command; ListUsers and ListAcls
//! are answered by the controller too (so a list right after a change shows it). Each was authorized first
//! ([`super::authorize`]: alter, or describe, on the cluster).

use odradek_client::scram::{Credential, Mechanism};
use odradek_client::wire::proto::{self as wire, ErrorCode, Response};

use super::admin::{admin_timeout, propose_meta};
use super::{ok_response, RequestError};
use crate::auth::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use crate::context::NodeContext;
use crate::meta::{MetaCommand, MetaOutcome};

/// A binding from its wire form, checked.
pub fn acl_from_wire(acl: &wire::Acl) -> Result<AclBinding, RequestError> {
    let bad = |what: &str, value: &str| RequestError::new(ErrorCode::INVALID_REQUEST, format!("unknown ACL {what} {value:?}"));
    let binding = AclBinding {
        principal: acl.principal.clone(),
        resource_type: ResourceType::parse(&acl.resource_type).ok_or_else(|| bad("resource type", &acl.resource_type))?,
        resource_name: acl.resource_name.clone(),
        pattern: PatternType::parse(&acl.pattern).ok_or_else(|| bad("pattern", &acl.pattern))?,
        operation: Operation::parse(&acl.operation).ok_or_else(|| bad("operation", &acl.operation))?,
        permission: Permission::parse(&acl.permission).ok_or_else(|| bad("permission", &acl.permission))?,
    };
    binding.validate().map_err(|reason| RequestError::new(ErrorCode::INVALID_REQUEST, reason))?;
    Ok(binding)
}

pub fn acl_to_wire(binding: &AclBinding) -> wire::Acl {
    let mut acl = wire::Acl::new();
    acl.principal = binding.principal.clone();
    acl.resource_type = binding.resource_type.name().to_string();
    acl.resource_name = binding.resource_name.clone();
    acl.pattern = binding.pattern.name().to_string();
    acl.operation = binding.operation.name().to_string();
    acl.permission = binding.permission.name().to_string();
    acl
}

/// Proposes `command` and maps its outcome: `Ok` for the expected ones.
async fn run(context: &NodeContext, id: u64, command: MetaCommand, timeout_ms: u32) -> Response {
    let outcome = match propose_meta(context, &command, admin_timeout(timeout_ms)).await {
        Ok(index) => context.state.lock().meta_outcomes.get(&index).cloned(),
        Err(error) => return error.into_response(id),
    };
    let refused = |code, message: String| RequestError::new(code, message).into_response(id);
    match outcome {
        Some(
            MetaOutcome::UserUpserted
            | MetaOutcome::UserDeleted
            | MetaOutcome::AclCreated
            | MetaOutcome::AclExists
            | MetaOutcome::AclDeleted,
        ) => ok_response(id),
        Some(MetaOutcome::UserUnknown) => refused(ErrorCode::USER_NOT_FOUND, "no such user".to_string()),
        Some(MetaOutcome::AclUnknown) => refused(ErrorCode::ACL_NOT_FOUND, "no such ACL".to_string()),
        Some(MetaOutcome::Rejected(reason)) => refused(ErrorCode::INVALID_REQUEST, reason),
        other => refused(ErrorCode::INTERNAL, format!("unexpected outcome of {command:?}: {other:?}")),
    }
}

pub async fn upsert_user(context: &NodeContext, id: u64, body: wire::UpsertUserRequest) -> Response {
    let Some(mechanism) = Mechanism::parse(&body.mechanism) else {
        let message = format!("mechanism {:?}; SCRAM-SHA-256 or SCRAM-SHA-512", body.mechanism);
        return RequestError::new(ErrorCode::UNSUPPORTED_SASL_MECHANISM, message).into_response(id);
    };
    if let Err(reason) = crate::auth::validate_user_name(&body.name) {
        return RequestError::new(ErrorCode::INVALID_REQUEST, reason).into_response(id);
    }
    if context.auth.settings.users.contains_key(&body.name) {
        let message = format!("user {:?} is configured on the nodes ([auth.users]); it is not managed here", body.name);
        return RequestError::new(ErrorCode::INVALID_REQUEST, message).into_response(id);
    }
    let credential = Credential {
        mechanism,
        salt: body.salt.clone(),
        iterations: body.iterations,
        stored_key: body.stored_key.clone(),
        server_key: body.server_key.clone(),
    };
    if !credential.is_well_formed() {
        let message =
            format!("a malformed {} credential (at least {} iterations)", mechanism.name(), odradek_client::scram::ITERATIONS_MIN);
        return RequestError::new(ErrorCode::INVALID_REQUEST, message).into_response(id);
    }
    run(context, id, MetaCommand::UpsertUser { name: body.name.clone(), credential }, body.timeout_ms).await
}

pub async fn delete_user(context: &NodeContext, id: u64, body: wire::DeleteUserRequest) -> Response {
    if context.state.lock().meta.user(&body.name).is_none() {
        return RequestError::new(ErrorCode::USER_NOT_FOUND, format!("no user {:?}", body.name)).into_response(id);
    }
    run(context, id, MetaCommand::DeleteUser { name: body.name.clone() }, body.timeout_ms).await
}

pub async fn create_acl(context: &NodeContext, id: u64, body: wire::CreateAclRequest) -> Response {
    match acl_from_wire(body.get_acl()) {
        Ok(binding) => run(context, id, MetaCommand::CreateAcl(binding), body.timeout_ms).await,
        Err(error) => error.into_response(id),
    }
}

pub async fn delete_acl(context: &NodeContext, id: u64, body: wire::DeleteAclRequest) -> Response {
    match acl_from_wire(body.get_acl()) {
        Ok(binding) => run(context, id, MetaCommand::DeleteAcl(binding), body.timeout_ms).await,
        Err(error) => error.into_response(id),
    }
}

pub fn list_users(context: &NodeContext, id: u64) -> Response {
    let mut users = wire::ListUsersResponse::new();
    for (name, credential) in context.state.lock().meta.users() {
        let mut user = wire::ListedUser::new();
        user.name = name.clone();
        user.mechanism = credential.mechanism.name().to_string();
        user.iterations = credential.iterations;
        users.users.push(user);
    }
    let mut response = ok_response(id);
    response.set_list_users(users);
    response
}

pub fn list_acls(context: &NodeContext, id: u64) -> Response {
    let mut acls = wire::ListAclsResponse::new();
    acls.acls = context.state.lock().meta.acls().iter().map(acl_to_wire).collect();
    let mut response = ok_response(id);
    response.set_list_acls(acls);
    response
}
