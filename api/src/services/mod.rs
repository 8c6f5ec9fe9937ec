//! Services: one module per domain. Every call that touches tenant data takes the [`Actor`];
//! every mutation runs in one transaction.

pub mod access;
pub mod catalog;
pub mod companies;
pub mod customers;
pub mod events;
pub mod identity;
pub mod incoming_webhooks;
pub mod invitations;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod users;
pub mod webhooks;
pub mod workflows;

pub use crate::db::rows::one_of;

use crate::{
    auth::{Actor, Principal, user_subject},
    domain::TextRule,
    error::{ApiError, ApiResult},
    state::AppState,
};

/// A display name: one line of 1 to `max` characters (see [`crate::domain::text`]); `field`
/// names the input in the error.
pub fn valid_name(field: &str, name: &str, max: usize) -> ApiResult<String> {
    let name = text(field, name, TextRule::single_line(max))?;
    if name.is_empty() {
        return Err(ApiError::validation(
            field,
            format!("the name must have 1 to {max} characters"),
        ));
    }
    Ok(name)
}

/// Free text under `rule`, trimmed; `field` names the input in the error.
pub fn text(field: &str, text: &str, rule: TextRule) -> ApiResult<String> {
    rule.check(text)
        .map_err(|reason| ApiError::validation(field, reason))
}

/// Optional free text (a note, a comment, a description) under `rule` (a bare number is
/// multi-line text of at most that many characters): trimmed, empty meaning none; `field`
/// names the input in the error.
pub fn optional_text(
    field: &str,
    text: Option<&str>,
    rule: impl Into<TextRule>,
) -> ApiResult<Option<String>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let text = self::text(field, text, rule.into())?;
    Ok((!text.is_empty()).then_some(text))
}

/// Refuses with `FORBIDDEN` unless the actor may perform `action` on `resource`. An API key
/// needs the permission through its role and its creator must still hold it too, so a key never
/// carries more than the person who made it.
pub async fn authorize(
    state: &AppState,
    actor: &Actor,
    resource: &str,
    action: &str,
) -> ApiResult<()> {
    let allowed = state.rbac.allows(actor, resource, action).await
        && match actor.principal() {
            Principal::User(_) => true,
            Principal::ApiKey { created_by, .. } => {
                state
                    .rbac
                    .subject_allows(
                        &user_subject(*created_by),
                        actor.company_id(),
                        resource,
                        action,
                    )
                    .await
            }
        };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "missing permission {resource}:{action}"
        )))
    }
}
