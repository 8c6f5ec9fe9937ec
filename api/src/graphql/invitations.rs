//! Invitations: a company invites a person by email; the person accepts or declines.

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use super::{
    context::{actor, parse_id, state},
    identity::{AuthPayload, field},
    pagination::{PageInfo, id_page, page_size, parse_id_cursor},
};
use crate::{
    domain::{Email, Locale},
    services::invitations::{self, InvitationView, NewAccount, NewInvitation},
};

/// Where an invitation stands.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::services::invitations::InvitationStatus")]
pub enum InvitationStatus {
    /// Sent, waiting for the invitee's answer.
    Pending,
    /// The invitee joined the company.
    Accepted,
    /// The invitee (or whoever held the link) turned it down.
    Declined,
    /// The company withdrew it before an answer.
    Revoked,
    /// Not answered within 7 days.
    Expired,
}

/// A company's invitation of a person, as the company and the invitee see it.
pub struct Invitation(InvitationView);

#[Object]
impl Invitation {
    async fn id(&self) -> ID {
        ID(self.0.invitation.id.to_string())
    }
    /// The address invited.
    async fn email(&self) -> &str {
        &self.0.invitation.email
    }
    /// The roles the invitee receives on accepting.
    async fn roles(&self) -> &[String] {
        &self.0.roles
    }
    async fn status(&self) -> InvitationStatus {
        self.0.status.into()
    }
    /// The inviting company's name.
    async fn company_name(&self) -> &str {
        &self.0.company_name
    }
    /// The inviting company's slug (what `login` asks for once the invitee is a member of several).
    async fn company_slug(&self) -> &str {
        &self.0.company_slug
    }
    /// The name of the member who sent the invitation.
    async fn invited_by(&self) -> &str {
        &self.0.invited_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.invitation.created_at
    }
    /// After this the invitation can no longer be accepted.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.invitation.expires_at
    }
    /// When it was accepted, declined or revoked.
    async fn responded_at(&self) -> Option<DateTime<Utc>> {
        self.0.invitation.responded_at
    }
}

/// A new invitation and its one-time token.
#[derive(SimpleObject)]
pub struct InvitationCreated {
    invitation: Invitation,
    /// `inv_…`: the invitee's key to `acceptInvitationWithToken` or
    /// `declineInvitationWithToken`. Shown only here, once: pass it on (as a link of your
    /// front end) until the platform sends invitations itself.
    token: String,
}

#[derive(SimpleObject)]
pub struct InvitationEdge {
    cursor: String,
    node: Invitation,
}

#[derive(SimpleObject)]
pub struct InvitationConnection {
    edges: Vec<InvitationEdge>,
    page_info: PageInfo,
}

/// What a person without an account gives to accept an invitation.
#[derive(InputObject)]
pub struct AcceptInvitationWithTokenInput {
    /// The `inv_…` token the inviter passed on.
    token: String,
    /// The name the company will see.
    name: String,
    /// At least 10 characters.
    password: String,
    /// `pt-BR`, `en-US` or `es-ES`; the company's locale when omitted.
    locale: Option<String>,
}

#[derive(Default)]
pub struct InvitationQuery;

#[Object]
impl InvitationQuery {
    /// Pending invitations addressed to the logged-in person's email, from every company,
    /// newest first.
    async fn my_invitations(&self, ctx: &Context<'_>) -> Result<Vec<Invitation>> {
        let invitations = invitations::mine(state(ctx)?, actor(ctx)?).await?;
        Ok(invitations.into_iter().map(Invitation).collect())
    }

    /// The company's invitations, newest first, optionally in one state (`members:manage`).
    async fn invitations(
        &self,
        ctx: &Context<'_>,
        status: Option<InvitationStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<InvitationConnection> {
        let after = parse_id_cursor("after", after.as_deref())?;
        let size = page_size(first);
        let rows = invitations::list(
            state(ctx)?,
            actor(ctx)?,
            status.map(Into::into),
            size + 1,
            after,
        )
        .await?;
        let (rows, page_info) = id_page(rows, size, after.is_some(), |row| row.invitation.id);
        Ok(InvitationConnection {
            edges: rows
                .into_iter()
                .map(|(cursor, invitation)| InvitationEdge {
                    cursor,
                    node: Invitation(invitation),
                })
                .collect(),
            page_info,
        })
    }
}

#[derive(Default)]
pub struct InvitationMutation;

#[Object]
impl InvitationMutation {
    /// Invites a person by email to join with `roles` (`members:manage`; you can only hand out
    /// roles whose permissions you hold). Nothing changes for the person until they accept;
    /// the answer is the same whether or not they have an account. One pending invitation per
    /// email (`CONFLICT`); each expires after 7 days; a company may send 30 an hour by default.
    async fn invite_member(
        &self,
        ctx: &Context<'_>,
        email: String,
        roles: Vec<String>,
    ) -> Result<InvitationCreated> {
        let new = NewInvitation {
            email: Email::parse(&email).map_err(field("email"))?,
            roles,
        };
        let created = invitations::invite(state(ctx)?, actor(ctx)?, new).await?;
        Ok(InvitationCreated {
            invitation: Invitation(created.invitation),
            token: created.token,
        })
    }

    /// Withdraws a pending invitation (`members:manage`); its token stops working at once.
    async fn revoke_invitation(&self, ctx: &Context<'_>, id: ID) -> Result<Invitation> {
        let id = parse_id("id", &id)?;
        Ok(Invitation(
            invitations::revoke(state(ctx)?, actor(ctx)?, id).await?,
        ))
    }

    /// Accepts one of `myInvitations`: you become a member of its company with its roles
    /// (`switchCompany` acts there). An expired, revoked or answered invitation is `FORBIDDEN`
    /// with `extensions.reason` `INVITATION_EXPIRED`, `INVITATION_REVOKED`,
    /// `INVITATION_ACCEPTED` or `INVITATION_DECLINED`.
    async fn accept_invitation(&self, ctx: &Context<'_>, id: ID) -> Result<Invitation> {
        let id = parse_id("id", &id)?;
        Ok(Invitation(
            invitations::accept(state(ctx)?, actor(ctx)?, id).await?,
        ))
    }

    /// Declines one of `myInvitations`; nothing else changes.
    async fn decline_invitation(&self, ctx: &Context<'_>, id: ID) -> Result<Invitation> {
        let id = parse_id("id", &id)?;
        Ok(Invitation(
            invitations::decline(state(ctx)?, actor(ctx)?, id).await?,
        ))
    }

    /// For a person without an account: accepts with the invitation's token, creates the
    /// account and logs it in to the inviting company. An email that has an account already is
    /// `UNAUTHENTICATED`: log in and accept from `myInvitations`.
    async fn accept_invitation_with_token(
        &self,
        ctx: &Context<'_>,
        input: AcceptInvitationWithTokenInput,
    ) -> Result<AuthPayload> {
        let account = NewAccount {
            token: input.token,
            name: input.name,
            password: input.password,
            locale: input
                .locale
                .as_deref()
                .map(Locale::parse)
                .transpose()
                .map_err(field("input.locale"))?,
        };
        Ok(invitations::accept_with_token(state(ctx)?, account)
            .await?
            .into())
    }

    /// Declines with the invitation's token, with or without an account.
    async fn decline_invitation_with_token(
        &self,
        ctx: &Context<'_>,
        token: String,
    ) -> Result<bool> {
        Ok(invitations::decline_with_token(state(ctx)?, &token).await?)
    }
}
