//! Invitations: how a person comes to belong to a company — with their consent.
//!
//! `inviteMember` records a pending invitation and hands the inviter a one-time token to pass
//! on. It answers the same whether or not an account exists for the email and never names
//! anyone: nothing here tells the inviter who the address belongs to. Until the invitee accepts,
//! nothing changes for them. They accept (or decline) logged in, from their own
//! `myInvitations`; a person without an account accepts with the token, which creates the
//! account and the membership in one transaction. Admins list and revoke their company's
//! invitations; each expires [`TTL_DAYS`] after it was sent.
//!
//! The invitee's side reads across companies on purpose: an invitation is found by the
//! invitee's own email, or by the token they hold, the way identity finds credentials, and
//! only ever returns invitations addressed to them; the answer then acts in the invitation's
//! company. The company's side goes through the tenant transaction like every other tenant
//! table.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use entity::{company, invitation, membership, role, user};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, RelationTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    access, authorize,
    identity::{self, Session},
    users,
};
use crate::{
    auth::{self, Actor, password, secret_hash, user_subject},
    db::tenant::{CompanyId, Intent, TenantTxn, global},
    domain::{Email, Locale},
    error::{ApiError, ApiResult},
    rate_limit::Limit,
    rbac::Permission,
    state::AppState,
};

/// Days an invitation stays open.
pub const TTL_DAYS: i64 = 7;

/// Marks an invitation token among the platform's other secrets.
const TOKEN_PREFIX: &str = "inv_";

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationStatus {
    /// Sent, waiting for the invitee's answer.
    Pending,
    Accepted,
    Declined,
    /// Withdrawn by the company before an answer.
    Revoked,
    /// Not answered within [`TTL_DAYS`].
    Expired,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Accepted => "ACCEPTED",
            Self::Declined => "DECLINED",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
        }
    }

    fn stored(status: &str) -> Self {
        match status {
            "ACCEPTED" => Self::Accepted,
            "DECLINED" => Self::Declined,
            "REVOKED" => Self::Revoked,
            "EXPIRED" => Self::Expired,
            _ => Self::Pending,
        }
    }

    /// The status as of `now`: a pending invitation past its expiry is expired, whether or not
    /// the row has been rewritten yet.
    fn of(row: &invitation::Model, now: DateTime<Utc>) -> Self {
        match Self::stored(&row.status) {
            Self::Pending if row.expires_at <= now => Self::Expired,
            status => status,
        }
    }

    /// Why an invitation in this state can no longer be answered (`FORBIDDEN`, with
    /// `extensions.reason` = `INVITATION_EXPIRED`, `INVITATION_REVOKED`…).
    fn refusal(self) -> ApiError {
        let (message, reason) = match self {
            Self::Pending => ("the invitation is still pending", "INVITATION_PENDING"),
            Self::Accepted => (
                "the invitation has been accepted already",
                "INVITATION_ACCEPTED",
            ),
            Self::Declined => (
                "the invitation has been declined already",
                "INVITATION_DECLINED",
            ),
            Self::Revoked => (
                "the company has revoked this invitation",
                "INVITATION_REVOKED",
            ),
            Self::Expired => ("the invitation has expired", "INVITATION_EXPIRED"),
        };
        ApiError::Forbidden {
            message: message.into(),
            reason: Some(reason),
        }
    }

    /// Rows in this state as of `now`.
    fn condition(self, now: DateTime<Utc>) -> Condition {
        let pending = Condition::all().add(invitation::Column::Status.eq(Self::Pending.as_str()));
        match self {
            Self::Pending => pending.add(invitation::Column::ExpiresAt.gt(now)),
            Self::Expired => Condition::any()
                .add(invitation::Column::Status.eq(Self::Expired.as_str()))
                .add(pending.add(invitation::Column::ExpiresAt.lte(now))),
            status => Condition::all().add(invitation::Column::Status.eq(status.as_str())),
        }
    }
}

/// An invitation as its company or its invitee sees it.
pub struct InvitationView {
    pub invitation: invitation::Model,
    pub status: InvitationStatus,
    pub roles: Vec<String>,
    pub company_name: String,
    pub company_slug: String,
    /// The name of the member who sent it.
    pub invited_by: String,
}

/// What `inviteMember` asks for, parsed.
pub struct NewInvitation {
    pub email: Email,
    pub roles: Vec<String>,
}

/// A new invitation and its token, shown this once.
pub struct CreatedInvitation {
    pub invitation: InvitationView,
    pub token: String,
}

/// What a person without an account gives to accept with the token.
pub struct NewAccount {
    pub token: String,
    pub name: String,
    pub password: String,
    /// The company's locale when not given.
    pub locale: Option<Locale>,
}

const ROLE_SEPARATOR: char = ',';

fn role_list(row: &invitation::Model) -> Vec<String> {
    row.roles
        .split(ROLE_SEPARATOR)
        .filter(|role| !role.is_empty())
        .map(String::from)
        .collect()
}

/// Attaches each invitation's company and inviter, with two queries for the whole list.
async fn views(
    db: &impl ConnectionTrait,
    rows: Vec<invitation::Model>,
) -> ApiResult<Vec<InvitationView>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let company_ids: Vec<Uuid> = rows.iter().map(|row| row.company_id).collect();
    let inviter_ids: Vec<Uuid> = rows.iter().map(|row| row.invited_by).collect();
    let companies: HashMap<Uuid, company::Model> = global::find::<company::Entity>()
        .filter(company::Column::Id.is_in(company_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|company| (company.id, company))
        .collect();
    let inviters: HashMap<Uuid, String> = global::find::<user::Entity>()
        .filter(user::Column::Id.is_in(inviter_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|user| (user.id, user.name))
        .collect();
    let now = Utc::now();
    Ok(rows
        .into_iter()
        .map(|row| {
            let company = companies.get(&row.company_id);
            InvitationView {
                status: InvitationStatus::of(&row, now),
                roles: role_list(&row),
                company_name: company.map(|c| c.name.clone()).unwrap_or_default(),
                company_slug: company.map(|c| c.slug.clone()).unwrap_or_default(),
                invited_by: inviters.get(&row.invited_by).cloned().unwrap_or_default(),
                invitation: row,
            }
        })
        .collect())
}

async fn view(db: &impl ConnectionTrait, row: invitation::Model) -> ApiResult<InvitationView> {
    views(db, vec![row])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("an invitation lost its view")))
}

// ---- the company's side ----

/// Invites `email` to the actor's company with `roles` (`members:manage`). The inviter must
/// hold every permission of those roles. The answer is the same whoever the email belongs to.
#[tracing::instrument(skip_all, fields(company_id = %actor.company_id()))]
pub async fn invite(
    state: &AppState,
    actor: &Actor,
    new: NewInvitation,
) -> ApiResult<CreatedInvitation> {
    authorize(state, actor, "members", "manage").await?;
    let invited_by = actor
        .user_id()
        .ok_or_else(|| ApiError::forbidden("people invite people; API keys cannot"))?;
    if new.roles.is_empty() {
        return Err(ApiError::validation(
            "roles",
            "give the member at least one role",
        ));
    }
    let limits = &state.settings.rate_limits;
    state
        .limiter
        .hit(
            &format!("invitations:company:{}", actor.company_id()),
            Limit::per(
                limits.invitations,
                Duration::from_secs(limits.invitation_window_secs),
            ),
        )
        .await?;
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let mut roles: Vec<String> = Vec::with_capacity(new.roles.len());
    for (index, name) in new.roles.iter().enumerate() {
        let role = access::find_role(&txn, name.trim()).await.map_err(|_| {
            ApiError::validation(format!("roles.{index}"), format!("no role named {name}"))
        })?;
        access::require_role_grantable(state, actor, &role.name).await?;
        if !roles.contains(&role.name) {
            roles.push(role.name);
        }
    }
    let is_member = txn
        .find::<membership::Entity>()
        .join(
            sea_orm::JoinType::InnerJoin,
            membership::Relation::User.def(),
        )
        .filter(user::Column::Email.eq(new.email.as_str()))
        .one(&txn)
        .await?
        .is_some();
    if is_member {
        return Err(ApiError::Conflict("this person is a member already".into()));
    }
    let now = Utc::now();
    let duplicate = format!(
        "{} has a pending invitation already: revoke it to send a new one",
        new.email
    );
    // An unanswered invitation past its expiry no longer stands in the way of a new one.
    txn.update::<invitation::Entity>()
        .col_expr(
            invitation::Column::Status,
            Expr::value(InvitationStatus::Expired.as_str()),
        )
        .col_expr(invitation::Column::UpdatedAt, Expr::value(now))
        .filter(invitation::Column::Email.eq(new.email.as_str()))
        .filter(invitation::Column::Status.eq(InvitationStatus::Pending.as_str()))
        .filter(invitation::Column::ExpiresAt.lte(now))
        .exec(&txn)
        .await?;
    let token = format!("{TOKEN_PREFIX}{}", auth::random_token(32));
    let row = txn
        .insert(invitation::ActiveModel {
            id: Set(Uuid::now_v7()),
            email: Set(new.email.as_str().to_string()),
            roles: Set(roles.join(&ROLE_SEPARATOR.to_string())),
            invited_by: Set(invited_by),
            token_hash: Set(secret_hash(&token)),
            status: Set(InvitationStatus::Pending.as_str().to_string()),
            expires_at: Set(now + chrono::Duration::days(TTL_DAYS)),
            responded_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .await
        // Only the pending-invitation index can collide: tokens carry 256 random bits.
        .map_err(|error| ApiError::conflict_on_unique(error, duplicate))?;
    let invitation = view(&txn, row).await?;
    txn.commit().await?;
    tracing::info!(invitation_id = %invitation.invitation.id, "invitation sent");
    Ok(CreatedInvitation { invitation, token })
}

/// The company's invitations, newest first, optionally in one state (`members:manage`).
pub async fn list(
    state: &AppState,
    actor: &Actor,
    status: Option<InvitationStatus>,
    first: u64,
    after: Option<Uuid>,
) -> ApiResult<Vec<InvitationView>> {
    authorize(state, actor, "members", "manage").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let mut query = txn.find::<invitation::Entity>();
    if let Some(status) = status {
        query = query.filter(status.condition(Utc::now()));
    }
    if let Some(after) = after {
        query = query.filter(invitation::Column::Id.lt(after));
    }
    let rows = query
        .order_by_desc(invitation::Column::Id)
        .limit(first)
        .all(&txn)
        .await?;
    let views = views(&txn, rows).await?;
    txn.commit().await?;
    Ok(views)
}

/// Withdraws a pending invitation (`members:manage`); its token stops working at once.
/// Revoking it again changes nothing; an answered or expired one cannot be revoked.
#[tracing::instrument(skip_all, fields(company_id = %actor.company_id()))]
pub async fn revoke(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<InvitationView> {
    authorize(state, actor, "members", "manage").await?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let row = txn
        .find::<invitation::Entity>()
        .filter(invitation::Column::Id.eq(id))
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("invitation"))?;
    let row = match InvitationStatus::of(&row, Utc::now()) {
        InvitationStatus::Revoked => row,
        InvitationStatus::Pending => answer(&txn, row, InvitationStatus::Revoked).await?,
        status => {
            return Err(ApiError::Conflict(format!(
                "the invitation is {} and cannot be revoked",
                status.as_str()
            )));
        }
    };
    let revoked = view(&txn, row).await?;
    txn.commit().await?;
    Ok(revoked)
}

// ---- the invitee's side ----

/// Moves a pending invitation to `to`, unless someone else answered, revoked or it expired
/// first: the update only applies to a row still pending, so of two answers exactly one wins.
async fn answer(
    txn: &TenantTxn,
    row: invitation::Model,
    to: InvitationStatus,
) -> ApiResult<invitation::Model> {
    let now = Utc::now();
    let status = InvitationStatus::of(&row, now);
    if status != InvitationStatus::Pending {
        return Err(status.refusal());
    }
    let answered = txn
        .update::<invitation::Entity>()
        .col_expr(invitation::Column::Status, Expr::value(to.as_str()))
        .col_expr(invitation::Column::RespondedAt, Expr::value(now))
        .col_expr(invitation::Column::UpdatedAt, Expr::value(now))
        .filter(invitation::Column::Id.eq(row.id))
        .filter(invitation::Column::Status.eq(InvitationStatus::Pending.as_str()))
        .filter(invitation::Column::ExpiresAt.gt(now))
        .exec(txn)
        .await?;
    if answered.rows_affected != 1 {
        return Err(ApiError::Conflict(
            "the invitation changed meanwhile; look at it again".into(),
        ));
    }
    Ok(invitation::Model {
        status: to.as_str().to_string(),
        responded_at: Some(now),
        updated_at: now,
        ..row
    })
}

/// The account of the logged-in person; API keys have no invitations.
async fn invitee(state: &AppState, actor: &Actor) -> ApiResult<user::Model> {
    let user_id = actor
        .user_id()
        .ok_or_else(|| ApiError::forbidden("API keys receive no invitations"))?;
    users::user_by_id(state, user_id).await
}

/// Invitations addressed to `email`, in every company.
fn addressed_to(email: &str) -> sea_orm::Select<invitation::Entity> {
    #[allow(clippy::disallowed_methods)] // cross-tenant: the invitee's own invitations, by email
    invitation::Entity::find().filter(invitation::Column::Email.eq(email))
}

/// The invitation the logged-in person's `id` names; another person's answers as unknown.
async fn own_invitation(
    state: &AppState,
    user: &user::Model,
    id: Uuid,
) -> ApiResult<invitation::Model> {
    addressed_to(&user.email)
        .filter(invitation::Column::Id.eq(id))
        .one(&state.system_db)
        .await?
        .ok_or(ApiError::NotFound("invitation"))
}

/// The invitation a token opens; an unknown token answers like an unknown invitation.
async fn by_token(state: &AppState, token: &str) -> ApiResult<invitation::Model> {
    #[allow(clippy::disallowed_methods)] // cross-tenant: the holder of the token is the invitee
    let row = invitation::Entity::find()
        .filter(invitation::Column::TokenHash.eq(secret_hash(token.trim())))
        .one(&state.system_db)
        .await?;
    row.ok_or(ApiError::NotFound("invitation"))
}

/// A transaction in the company of an invitation its invitee answers.
async fn begin_answer(
    state: &AppState,
    row: &invitation::Model,
    intent: Intent,
) -> ApiResult<TenantTxn> {
    Ok(state
        .begin_for_company(
            CompanyId::from_row(row.company_id),
            "the invitee answers",
            intent,
        )
        .await?)
}

/// Pending invitations addressed to the logged-in person's email, in every company, newest first.
pub async fn mine(state: &AppState, actor: &Actor) -> ApiResult<Vec<InvitationView>> {
    let user = invitee(state, actor).await?;
    let rows = addressed_to(&user.email)
        .filter(InvitationStatus::Pending.condition(Utc::now()))
        .order_by_desc(invitation::Column::Id)
        .all(&state.system_db)
        .await?;
    views(&state.system_db, rows).await
}

/// Whether the invitation's sender still holds every permission of `role` in its company.
async fn sender_may_grant(state: &AppState, row: &invitation::Model, role: &str) -> bool {
    let sender = user_subject(row.invited_by);
    for permission in state
        .rbac
        .permissions_of(role, row.company_id)
        .await
        .iter()
        .flat_map(Permission::expand)
    {
        if !state
            .rbac
            .subject_allows(
                &sender,
                row.company_id,
                &permission.resource,
                &permission.action,
            )
            .await
        {
            return false;
        }
    }
    true
}

/// Makes `user_id` a member of the invitation's company with those of its roles that still
/// exist and that its sender could still hand out: like an API key and its creator, an
/// invitation never carries more than the person who sent it, who may have been removed or
/// lost a role since.
async fn join(
    state: &AppState,
    txn: &TenantTxn,
    row: &invitation::Model,
    user_id: Uuid,
) -> ApiResult<()> {
    let existing = txn
        .find::<role::Entity>()
        .filter(role::Column::Name.is_in(role_list(row)))
        .all(txn)
        .await?;
    let mut roles = Vec::with_capacity(existing.len());
    for role in existing {
        if sender_may_grant(state, row, &role.name).await {
            roles.push(role.name);
        }
    }
    if roles.is_empty() {
        return Err(ApiError::Conflict(
            "this invitation no longer carries a role its sender may give; ask the company for a new one"
                .into(),
        ));
    }
    access::add_member(txn, user_id).await?;
    for role in &roles {
        access::grant(txn, &user_subject(user_id), role).await?;
    }
    Ok(())
}

/// Accepts one of the logged-in person's invitations: they become a member of its company with
/// its roles (`switchCompany` then acts there).
#[tracing::instrument(skip_all)]
pub async fn accept(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<InvitationView> {
    let user = invitee(state, actor).await?;
    let row = own_invitation(state, &user, id).await?;
    let txn = begin_answer(state, &row, Intent::ChangeAccess).await?;
    let row = answer(&txn, row, InvitationStatus::Accepted).await?;
    join(state, &txn, &row, user.id).await?;
    let accepted = view(&txn, row).await?;
    txn.commit().await?;
    tracing::info!(invitation_id = %accepted.invitation.id, company_id = %accepted.invitation.company_id,
        "invitation accepted");
    Ok(accepted)
}

/// Declines one of the logged-in person's invitations; nothing else changes.
pub async fn decline(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<InvitationView> {
    let user = invitee(state, actor).await?;
    let row = own_invitation(state, &user, id).await?;
    let txn = begin_answer(state, &row, Intent::Write).await?;
    let row = answer(&txn, row, InvitationStatus::Declined).await?;
    let declined = view(&txn, row).await?;
    txn.commit().await?;
    Ok(declined)
}

/// Accepts with the token, for a person without an account: creates the account with `name`
/// and `password`, makes it a member of the company and logs it in there. An email that has an
/// account already must log in and accept from `myInvitations` (`UNAUTHENTICATED`).
#[tracing::instrument(skip_all)]
pub async fn accept_with_token(state: &AppState, account: NewAccount) -> ApiResult<Session> {
    let row = by_token(state, &account.token).await?;
    let status = InvitationStatus::of(&row, Utc::now());
    if status != InvitationStatus::Pending {
        return Err(status.refusal());
    }
    let log_in_instead = || {
        ApiError::unauthenticated(
            "an account with this email exists: log in and accept the invitation from myInvitations",
        )
    };
    let has_account = global::find::<user::Entity>()
        .filter(user::Column::Email.eq(row.email.as_str()))
        .one(&state.db)
        .await?
        .is_some();
    if has_account {
        return Err(log_in_instead());
    }
    let company = global::find::<company::Entity>()
        .filter(company::Column::Id.eq(row.company_id))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("invitation"))?;
    identity::ensure_active(&company.status)?;
    password::validate("input.password", &account.password)?;
    let password_hash = password::hash(account.password).await?;
    let email = Email::parse(&row.email).map_err(|message| {
        ApiError::internal(anyhow::anyhow!("stored invitation email: {message}"))
    })?;
    let locale = account
        .locale
        .unwrap_or_else(|| Locale::parse(&company.locale).unwrap_or(Locale::DEFAULT));

    let txn = begin_answer(state, &row, Intent::ChangeAccess).await?;
    let row = answer(&txn, row, InvitationStatus::Accepted).await?;
    let user = users::insert_user(&txn, &email, &account.name, Some(password_hash), locale)
        .await
        .map_err(|error| match error {
            ApiError::Conflict(_) => log_in_instead(),
            other => other,
        })?;
    join(state, &txn, &row, user.id).await?;
    let session = identity::issue_session(state, &txn, user, company, None).await?;
    txn.commit().await?;
    tracing::info!(invitation_id = %row.id, company_id = %row.company_id,
        "invitation accepted with its token");
    Ok(session)
}

/// Declines with the token. Whoever holds the link may turn it down, with or without an
/// account, so a declined invitation says nothing about whether the address has one.
pub async fn decline_with_token(state: &AppState, token: &str) -> ApiResult<bool> {
    let row = by_token(state, token).await?;
    let txn = begin_answer(state, &row, Intent::Write).await?;
    answer(&txn, row, InvitationStatus::Declined).await?;
    txn.commit().await?;
    Ok(true)
}
