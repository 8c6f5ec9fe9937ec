//! Who may do what in a company: roles and their permissions, members and their roles, and
//! API keys. Policies are casbin rules written in the same transaction as the change; after
//! the commit every instance reloads them (see [`crate::rbac`]).
//!
//! Two rules hold throughout: nobody grants (or takes away) a permission they do not hold
//! themselves, and a company always keeps at least one ADMIN. People join a company only by
//! accepting an invitation ([`super::invitations`]), which grants its roles through here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use entity::{api_key, casbin_rule, membership, refresh_token, role, user, workflow};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use uuid::Uuid;

use super::authorize;
use crate::{
    auth::{
        self, Actor, USER_SUBJECT_PREFIX, api_key_subject, secret_hash, user_of_subject,
        user_subject,
    },
    db::tenant::{Intent, TenantTxn, global},
    domain::workflow::Definition,
    error::{ApiError, ApiResult, UniqueKey},
    rbac::{ADMIN, Permission, is_valid_role_name},
    state::AppState,
};

const POLICY: &str = "p";
const GROUPING: &str = "g";

/// A role and what it allows.
pub struct RoleView {
    pub name: String,
    pub built_in: bool,
    pub permissions: Vec<Permission>,
}

/// A member and the roles they hold.
pub struct MemberView {
    pub user: user::Model,
    pub roles: Vec<String>,
}

/// A new API key: the stored row and the secret, shown this once.
pub struct CreatedApiKey {
    pub key: api_key::Model,
    pub secret: String,
}

// ---- casbin rules, written inside the caller's transaction ----

/// A rule; the transaction that inserts it sets its company.
fn rule(ptype: &str, values: [&str; 4]) -> casbin_rule::ActiveModel {
    casbin_rule::ActiveModel {
        ptype: Set(ptype.to_string()),
        v0: Set(values[0].to_string()),
        v1: Set(values[1].to_string()),
        v2: Set(values[2].to_string()),
        v3: Set(values[3].to_string()),
        v4: Set(String::new()),
        v5: Set(String::new()),
        ..Default::default()
    }
}

/// Stores a role and its permissions.
pub(super) async fn insert_role(
    txn: &TenantTxn,
    name: &str,
    built_in: bool,
    permissions: &[Permission],
) -> ApiResult<()> {
    let now = Utc::now();
    txn.insert(role::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.to_string()),
        built_in: Set(built_in),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .await
    .map_err(|error| {
        ApiError::conflict_on(
            error,
            UniqueKey::new("roles_company_name_key", "roles", &["company_id", "name"]),
            format!("a role named {name} exists already"),
        )
    })?;
    insert_permissions(txn, name, permissions).await
}

async fn insert_permissions(
    txn: &TenantTxn,
    role: &str,
    permissions: &[Permission],
) -> ApiResult<()> {
    let domain = txn.company().to_string();
    txn.insert_many(permissions.iter().map(|permission| {
        rule(
            POLICY,
            [role, &domain, &permission.resource, &permission.action],
        )
    }))
    .await?;
    Ok(())
}

/// `subject` holds `role` in the company (idempotent: the unique index absorbs a repeat).
pub(super) async fn grant(txn: &TenantTxn, subject: &str, role: &str) -> ApiResult<()> {
    let domain = txn.company().to_string();
    let mut grant = rule(GROUPING, [subject, role, &domain, ""]);
    grant.company_id = Set(txn.company().get());
    casbin_rule::Entity::insert(grant)
        .on_conflict_do_nothing()
        .exec(txn)
        .await?;
    Ok(())
}

pub(super) async fn add_member(txn: &TenantTxn, user_id: Uuid) -> ApiResult<()> {
    let now = Utc::now();
    txn.insert(membership::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .await
    .map_err(|error| {
        ApiError::conflict_on(
            error,
            UniqueKey::new(
                "memberships_company_user_key",
                "memberships",
                &["company_id", "user_id"],
            ),
            "this person is a member already",
        )
    })?;
    Ok(())
}

// ---- checks ----

fn role_name(field: &str, name: &str) -> ApiResult<String> {
    let name = name.trim().to_string();
    if is_valid_role_name(&name) {
        Ok(name)
    } else {
        Err(ApiError::validation(
            field,
            "a role name is 2 to 32 upper-case letters, digits or underscores, starting with a letter",
        ))
    }
}

/// Parses requested permissions against the catalogue, without duplicates.
pub fn parse_permissions(input: &[(String, String)]) -> ApiResult<Vec<Permission>> {
    let mut permissions = input
        .iter()
        .enumerate()
        .map(|(index, (resource, action))| {
            Permission::parse(resource.trim(), action.trim())
                .map_err(|message| ApiError::validation(format!("permissions.{index}"), message))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    permissions.sort();
    permissions.dedup();
    Ok(permissions)
}

/// Refuses unless the actor holds every one of `permissions` (expanding `*`).
async fn require_all(state: &AppState, actor: &Actor, permissions: &[Permission]) -> ApiResult<()> {
    for permission in permissions.iter().flat_map(Permission::expand) {
        if authorize(state, actor, &permission.resource, &permission.action)
            .await
            .is_err()
        {
            return Err(ApiError::forbidden(format!(
                "you cannot grant {permission}, which you do not hold"
            )));
        }
    }
    Ok(())
}

pub(super) async fn find_role(txn: &TenantTxn, name: &str) -> ApiResult<role::Model> {
    txn.find::<role::Entity>()
        .filter(role::Column::Name.eq(name))
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound("role"))
}

pub(super) async fn find_member(txn: &TenantTxn, user_id: Uuid) -> ApiResult<membership::Model> {
    txn.find::<membership::Entity>()
        .filter(membership::Column::UserId.eq(user_id))
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound("member"))
}

fn grouping_rules(txn: &TenantTxn) -> sea_orm::Select<casbin_rule::Entity> {
    txn.find::<casbin_rule::Entity>()
        .filter(casbin_rule::Column::Ptype.eq(GROUPING))
}

/// Users (not keys) holding ADMIN in the transaction's company.
async fn admin_count(txn: &TenantTxn) -> ApiResult<u64> {
    Ok(grouping_rules(txn)
        .filter(casbin_rule::Column::V1.eq(ADMIN))
        .filter(casbin_rule::Column::V0.starts_with(USER_SUBJECT_PREFIX))
        .count(txn)
        .await?)
}

/// Users (not keys) holding `role` in the transaction's company.
pub(super) async fn role_holders(txn: &TenantTxn, role: &str) -> ApiResult<Vec<Uuid>> {
    Ok(grouping_rules(txn)
        .filter(casbin_rule::Column::V1.eq(role))
        .all(txn)
        .await?
        .into_iter()
        .filter_map(|grant| user_of_subject(&grant.v0))
        .collect())
}

// ---- roles ----

pub async fn roles(state: &AppState, actor: &Actor) -> ApiResult<Vec<RoleView>> {
    authorize(state, actor, "roles", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let roles = txn
        .find::<role::Entity>()
        .order_by_asc(role::Column::Name)
        .all(&txn)
        .await?;
    txn.commit().await?;
    let mut views = Vec::with_capacity(roles.len());
    for role in roles {
        views.push(RoleView {
            permissions: state
                .rbac
                .permissions_of(&role.name, actor.company_id())
                .await,
            name: role.name,
            built_in: role.built_in,
        });
    }
    Ok(views)
}

pub async fn create_role(
    state: &AppState,
    actor: &Actor,
    name: &str,
    permissions: Vec<Permission>,
) -> ApiResult<RoleView> {
    authorize(state, actor, "roles", "manage").await?;
    let name = role_name("name", name)?;
    require_all(state, actor, &permissions).await?;
    let txn = state.begin_for(actor, Intent::ChangeAccess).await?;
    insert_role(&txn, &name, false, &permissions).await?;
    txn.commit().await?;
    Ok(RoleView {
        name,
        built_in: false,
        permissions,
    })
}

pub async fn update_role(
    state: &AppState,
    actor: &Actor,
    name: &str,
    permissions: Vec<Permission>,
) -> ApiResult<RoleView> {
    authorize(state, actor, "roles", "manage").await?;
    let txn = state.begin_for(actor, Intent::ChangeAccess).await?;
    let role = find_role(&txn, name.trim()).await?;
    if role.built_in {
        return Err(ApiError::validation(
            "name",
            "built-in roles cannot be changed",
        ));
    }
    let current = state
        .rbac
        .permissions_of(&role.name, actor.company_id())
        .await;
    require_all(state, actor, &current).await?;
    require_all(state, actor, &permissions).await?;
    txn.delete::<casbin_rule::Entity>()
        .filter(casbin_rule::Column::Ptype.eq(POLICY))
        .filter(casbin_rule::Column::V0.eq(&role.name))
        .exec(&txn)
        .await?;
    insert_permissions(&txn, &role.name, &permissions).await?;
    txn.commit().await?;
    Ok(RoleView {
        name: role.name,
        built_in: false,
        permissions,
    })
}

/// Deletes a custom role nobody holds any more.
pub async fn delete_role(state: &AppState, actor: &Actor, name: &str) -> ApiResult<bool> {
    authorize(state, actor, "roles", "manage").await?;
    let txn = state.begin_for(actor, Intent::ChangeAccess).await?;
    let role = find_role(&txn, name.trim()).await?;
    if role.built_in {
        return Err(ApiError::validation(
            "name",
            "built-in roles cannot be deleted",
        ));
    }
    let holders = grouping_rules(&txn)
        .filter(casbin_rule::Column::V1.eq(&role.name))
        .count(&txn)
        .await?;
    if holders > 0 {
        return Err(ApiError::Conflict(format!(
            "{holders} members or API keys hold {}; revoke it from them first",
            role.name
        )));
    }
    let workflows = txn.find::<workflow::Entity>().all(&txn).await?;
    if let Some(user) = workflows.iter().find(|workflow| {
        serde_json::from_str::<Definition>(&workflow.definition).is_ok_and(|definition| {
            definition
                .transitions
                .iter()
                .any(|transition| transition.roles.contains(&role.name))
        })
    }) {
        return Err(ApiError::Conflict(format!(
            "workflow {} (version {}) lets {} make transitions; change it first",
            user.name, user.version, role.name
        )));
    }
    txn.delete::<casbin_rule::Entity>()
        .filter(casbin_rule::Column::Ptype.eq(POLICY))
        .filter(casbin_rule::Column::V0.eq(&role.name))
        .exec(&txn)
        .await?;
    txn.delete::<role::Entity>()
        .filter(role::Column::Id.eq(role.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(true)
}

/// Refuses unless the actor holds every permission of `role` (so they may hand it out or take it).
pub(super) async fn require_role_grantable(
    state: &AppState,
    actor: &Actor,
    role: &str,
) -> ApiResult<()> {
    let permissions = state.rbac.permissions_of(role, actor.company_id()).await;
    require_all(state, actor, &permissions).await
}

// ---- members ----

pub async fn members(state: &AppState, actor: &Actor) -> ApiResult<Vec<MemberView>> {
    authorize(state, actor, "members", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let rows = txn
        .find::<membership::Entity>()
        .find_also_related(user::Entity)
        .all(&txn)
        .await?;
    let grants = grouping_rules(&txn).all(&txn).await?;
    txn.commit().await?;
    let mut roles_by_subject: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for grant in grants {
        roles_by_subject.entry(grant.v0).or_default().push(grant.v1);
    }
    let mut members: Vec<MemberView> = rows
        .into_iter()
        .filter_map(|(_, user)| user)
        .map(|user| {
            let mut roles = roles_by_subject
                .remove(&user_subject(user.id))
                .unwrap_or_default();
            roles.sort();
            MemberView { user, roles }
        })
        .collect();
    members.sort_by(|a, b| a.user.email.cmp(&b.user.email));
    Ok(members)
}

async fn member_view(state: &AppState, actor: &Actor, user_id: Uuid) -> ApiResult<MemberView> {
    let user = global::find::<user::Entity>()
        .filter(user::Column::Id.eq(user_id))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    let roles = state
        .rbac
        .roles_of(&user_subject(user_id), actor.company_id())
        .await;
    Ok(MemberView { user, roles })
}

/// Opens the transaction of a role change for a member: the actor may manage members, the
/// company is locked, the member and role exist, and the actor holds every permission of the role.
async fn begin_role_change(
    state: &AppState,
    actor: &Actor,
    user_id: Uuid,
    role: &str,
) -> ApiResult<(TenantTxn, role::Model)> {
    authorize(state, actor, "members", "manage").await?;
    let txn = state.begin_for(actor, Intent::ChangeAccess).await?;
    find_member(&txn, user_id).await?;
    let role = find_role(&txn, role.trim()).await?;
    require_role_grantable(state, actor, &role.name).await?;
    Ok((txn, role))
}

pub async fn assign_role(
    state: &AppState,
    actor: &Actor,
    user_id: Uuid,
    role: &str,
) -> ApiResult<MemberView> {
    let (txn, role) = begin_role_change(state, actor, user_id, role).await?;
    grant(&txn, &user_subject(user_id), &role.name).await?;
    txn.commit().await?;
    member_view(state, actor, user_id).await
}

pub async fn revoke_role(
    state: &AppState,
    actor: &Actor,
    user_id: Uuid,
    role: &str,
) -> ApiResult<MemberView> {
    let (txn, role) = begin_role_change(state, actor, user_id, role).await?;
    let subject = user_subject(user_id);
    let holds = grouping_rules(&txn)
        .filter(casbin_rule::Column::V0.eq(&subject))
        .filter(casbin_rule::Column::V1.eq(&role.name))
        .count(&txn)
        .await?
        > 0;
    if holds && role.name == ADMIN && admin_count(&txn).await? <= 1 {
        return Err(ApiError::Conflict(
            "the last ADMIN cannot be demoted".into(),
        ));
    }
    txn.delete::<casbin_rule::Entity>()
        .filter(casbin_rule::Column::Ptype.eq(GROUPING))
        .filter(casbin_rule::Column::V0.eq(&subject))
        .filter(casbin_rule::Column::V1.eq(&role.name))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    member_view(state, actor, user_id).await
}

/// Removes a member: their roles, their sessions in this company and the keys they made.
pub async fn remove_member(state: &AppState, actor: &Actor, user_id: Uuid) -> ApiResult<bool> {
    authorize(state, actor, "members", "manage").await?;
    let txn = state.begin_for(actor, Intent::ChangeAccess).await?;
    let membership = find_member(&txn, user_id).await?;
    let subject = user_subject(user_id);
    let held: Vec<String> = grouping_rules(&txn)
        .filter(casbin_rule::Column::V0.eq(&subject))
        .all(&txn)
        .await?
        .into_iter()
        .map(|grant| grant.v1)
        .collect();
    for role in &held {
        require_role_grantable(state, actor, role).await?;
    }
    if held.iter().any(|role| role == ADMIN) && admin_count(&txn).await? <= 1 {
        return Err(ApiError::Conflict(
            "the last ADMIN cannot be removed".into(),
        ));
    }
    let now = Utc::now();
    let keys: Vec<Uuid> = txn
        .find::<api_key::Entity>()
        .filter(api_key::Column::CreatedBy.eq(user_id))
        .all(&txn)
        .await?
        .into_iter()
        .map(|key| key.id)
        .collect();
    let key_subjects: Vec<String> = keys.iter().map(|id| api_key_subject(*id)).collect();
    txn.update::<api_key::Entity>()
        .col_expr(api_key::Column::RevokedAt, Expr::value(now))
        .filter(api_key::Column::Id.is_in(keys))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    txn.delete::<casbin_rule::Entity>()
        .filter(casbin_rule::Column::Ptype.eq(GROUPING))
        .filter(casbin_rule::Column::V0.is_in(key_subjects.into_iter().chain([subject])))
        .exec(&txn)
        .await?;
    txn.update::<refresh_token::Entity>()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::UserId.eq(user_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    txn.delete::<membership::Entity>()
        .filter(membership::Column::Id.eq(membership.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(true)
}

// ---- API keys ----

pub async fn api_keys(state: &AppState, actor: &Actor) -> ApiResult<Vec<api_key::Model>> {
    authorize(state, actor, "api_keys", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let keys = txn
        .find::<api_key::Entity>()
        .order_by_desc(api_key::Column::CreatedAt)
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(keys)
}

/// Creates a key holding `role`; its creator must hold every permission of the role.
pub async fn create_api_key(
    state: &AppState,
    actor: &Actor,
    name: &str,
    role: &str,
) -> ApiResult<CreatedApiKey> {
    authorize(state, actor, "api_keys", "manage").await?;
    let created_by = actor
        .user_id()
        .ok_or_else(|| ApiError::forbidden("API keys are created by people, not by other keys"))?;
    let name = super::valid_name("name", name, 100)?;
    let txn = state.begin_for(actor, Intent::ChangeAccess).await?;
    let role = find_role(&txn, role.trim())
        .await
        .map_err(|_| ApiError::validation("role", format!("no role named {}", role.trim())))?;
    require_role_grantable(state, actor, &role.name).await?;
    let secret = auth::new_api_key_secret();
    let now = Utc::now();
    let key = txn
        .insert(api_key::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(name.to_string()),
            role: Set(role.name.clone()),
            prefix: Set(secret.chars().take(10).collect()),
            secret_hash: Set(secret_hash(&secret)),
            created_by: Set(created_by),
            last_used_at: Set(None),
            revoked_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .await?;
    grant(&txn, &api_key_subject(key.id), &role.name).await?;
    txn.commit().await?;
    Ok(CreatedApiKey { key, secret })
}

pub async fn revoke_api_key(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
) -> ApiResult<api_key::Model> {
    authorize(state, actor, "api_keys", "manage").await?;
    let txn = state.begin_for(actor, Intent::ChangeAccess).await?;
    let key = txn
        .find::<api_key::Entity>()
        .filter(api_key::Column::Id.eq(id))
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("API key"))?;
    let now: DateTime<Utc> = Utc::now();
    txn.update::<api_key::Entity>()
        .col_expr(
            api_key::Column::RevokedAt,
            Expr::value(key.revoked_at.unwrap_or(now)),
        )
        .col_expr(api_key::Column::UpdatedAt, Expr::value(now))
        .filter(api_key::Column::Id.eq(key.id))
        .exec(&txn)
        .await?;
    let revoked = api_key::Model {
        revoked_at: Some(key.revoked_at.unwrap_or(now)),
        updated_at: now,
        ..key
    };
    txn.delete::<casbin_rule::Entity>()
        .filter(casbin_rule::Column::Ptype.eq(GROUPING))
        .filter(casbin_rule::Column::V0.eq(api_key_subject(key.id)))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(revoked)
}
