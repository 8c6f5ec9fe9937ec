//! Roles, members and API keys of the actor's company (people join through invitations).

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::api_key;

use super::{
    context::{actor, parse_id, state},
    identity::User,
};
use crate::{
    error::ApiError,
    rbac,
    services::access::{self, MemberView, RoleView},
};

/// Permission to perform `action` on `resource`; `*` stands for all (held only by ADMIN).
#[derive(SimpleObject)]
pub struct Permission {
    resource: String,
    action: String,
}

impl From<rbac::Permission> for Permission {
    fn from(permission: rbac::Permission) -> Self {
        Self {
            resource: permission.resource,
            action: permission.action,
        }
    }
}

#[derive(InputObject)]
pub struct PermissionInput {
    /// One of: orders, customers, catalog, workflows, payments, webhooks, members, roles,
    /// api_keys, reports, billing, settings, events.
    resource: String,
    /// One of: read, create, update, delete, transition, refund, manage.
    action: String,
}

fn parse(permissions: Vec<PermissionInput>) -> Result<Vec<rbac::Permission>, ApiError> {
    let pairs: Vec<(String, String)> = permissions
        .into_iter()
        .map(|permission| (permission.resource, permission.action))
        .collect();
    access::parse_permissions(&pairs)
}

/// A named set of permissions members and API keys can hold.
#[derive(SimpleObject)]
pub struct Role {
    name: String,
    /// Built-in roles come with the company and cannot be changed or deleted.
    built_in: bool,
    permissions: Vec<Permission>,
}

impl From<RoleView> for Role {
    fn from(role: RoleView) -> Self {
        Self {
            name: role.name,
            built_in: role.built_in,
            permissions: role.permissions.into_iter().map(Permission::from).collect(),
        }
    }
}

/// A person in the company and the roles they hold there.
#[derive(SimpleObject)]
pub struct Member {
    user: User,
    roles: Vec<String>,
}

impl From<MemberView> for Member {
    fn from(member: MemberView) -> Self {
        Self {
            user: User(member.user),
            roles: member.roles,
        }
    }
}

/// An integrator's key. The secret is shown only once, when the key is created.
pub struct ApiKey(api_key::Model);

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The one role the key holds.
    async fn role(&self) -> &str {
        &self.0.role
    }
    /// The first characters of the secret, to tell keys apart.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
}

#[derive(SimpleObject)]
pub struct ApiKeyCreated {
    api_key: ApiKey,
    /// `pk_…`: send as `Authorization: Bearer pk_…` or `X-API-Key`. Not shown again.
    secret: String,
}

#[derive(Default)]
pub struct AccessQuery;

#[Object]
impl AccessQuery {
    /// The company's roles with their permissions (`roles:read`).
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<Role>> {
        let roles = access::roles(state(ctx)?, actor(ctx)?).await?;
        Ok(roles.into_iter().map(Role::from).collect())
    }

    /// The company's members with their roles (`members:read`).
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<Member>> {
        let members = access::members(state(ctx)?, actor(ctx)?).await?;
        Ok(members.into_iter().map(Member::from).collect())
    }

    /// The company's API keys, newest first (`api_keys:read`).
    async fn api_keys(&self, ctx: &Context<'_>) -> Result<Vec<ApiKey>> {
        let keys = access::api_keys(state(ctx)?, actor(ctx)?).await?;
        Ok(keys.into_iter().map(ApiKey).collect())
    }
}

#[derive(Default)]
pub struct AccessMutation;

#[Object]
impl AccessMutation {
    /// Creates a custom role (`roles:manage`). You can only grant permissions you hold.
    async fn create_role(
        &self,
        ctx: &Context<'_>,
        name: String,
        permissions: Vec<PermissionInput>,
    ) -> Result<Role> {
        let permissions = parse(permissions)?;
        Ok(
            access::create_role(state(ctx)?, actor(ctx)?, &name, permissions)
                .await?
                .into(),
        )
    }

    /// Replaces a custom role's permissions (`roles:manage`).
    async fn update_role(
        &self,
        ctx: &Context<'_>,
        name: String,
        permissions: Vec<PermissionInput>,
    ) -> Result<Role> {
        let permissions = parse(permissions)?;
        Ok(
            access::update_role(state(ctx)?, actor(ctx)?, &name, permissions)
                .await?
                .into(),
        )
    }

    /// Deletes a custom role nobody holds (`roles:manage`).
    async fn delete_role(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        Ok(access::delete_role(state(ctx)?, actor(ctx)?, &name).await?)
    }

    /// Gives a member a role (`members:manage`).
    async fn assign_role(&self, ctx: &Context<'_>, user_id: ID, role: String) -> Result<Member> {
        let user_id = parse_id("userId", &user_id)?;
        Ok(
            access::assign_role(state(ctx)?, actor(ctx)?, user_id, &role)
                .await?
                .into(),
        )
    }

    /// Takes a role from a member (`members:manage`). The last ADMIN keeps theirs.
    async fn revoke_role(&self, ctx: &Context<'_>, user_id: ID, role: String) -> Result<Member> {
        let user_id = parse_id("userId", &user_id)?;
        Ok(
            access::revoke_role(state(ctx)?, actor(ctx)?, user_id, &role)
                .await?
                .into(),
        )
    }

    /// Removes a member with their roles, sessions and API keys (`members:manage`).
    async fn remove_member(&self, ctx: &Context<'_>, user_id: ID) -> Result<bool> {
        let user_id = parse_id("userId", &user_id)?;
        Ok(access::remove_member(state(ctx)?, actor(ctx)?, user_id).await?)
    }

    /// Creates an API key holding `role` (`api_keys:manage`); the secret is returned once.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        name: String,
        role: String,
    ) -> Result<ApiKeyCreated> {
        let created = access::create_api_key(state(ctx)?, actor(ctx)?, &name, &role).await?;
        Ok(ApiKeyCreated {
            api_key: ApiKey(created.key),
            secret: created.secret,
        })
    }

    /// Revokes an API key at once (`api_keys:manage`).
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> Result<ApiKey> {
        let id = parse_id("id", &id)?;
        Ok(ApiKey(
            access::revoke_api_key(state(ctx)?, actor(ctx)?, id).await?,
        ))
    }
}
