//! `GET/POST /notifications/unsubscribe?token=…`: the unsubscribe link of a notification.
//! `GET` only says what the link opts out of — mail scanners and link previews fetch links,
//! and must not unsubscribe anyone — and `POST` (the page's button, or a mail client's
//! one-click `List-Unsubscribe-Post`) records the opt-out, honoured by the next send.

use axum::{
    Extension, Json,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{HttpState, RequestId, api_error_response, error_response};
use crate::{
    crypto::TokenRefused,
    services::notifications::preferences::{self, UnsubscribeRequest},
};

#[derive(Deserialize)]
pub struct Link {
    token: Option<String>,
}

/// Why a link is refused: its status, code and message.
type Refused = (StatusCode, &'static str, &'static str);

fn checked(state: &HttpState, link: &Link) -> Result<UnsubscribeRequest, Refused> {
    let Some(token) = link.token.as_deref() else {
        return Err((
            StatusCode::BAD_REQUEST,
            "VALIDATION",
            "the link has no token",
        ));
    };
    preferences::read_unsubscribe(&state.app, token).map_err(|refused| {
        metrics::counter!("notification_unsubscribe_refused_total").increment(1);
        let message = match refused {
            TokenRefused::Invalid => "the unsubscribe link is not valid",
            TokenRefused::Expired => {
                "the unsubscribe link has expired; use the link in a more recent message"
            }
        };
        (StatusCode::FORBIDDEN, "FORBIDDEN", message)
    })
}

fn refusal((status, code, message): Refused) -> Response {
    error_response(status, code, message)
}

fn described(request: &UnsubscribeRequest, unsubscribed: bool) -> Response {
    Json(json!({
        "category": request.category.as_str(),
        "channel": request.channel.as_str(),
        "critical": request.critical,
        "unsubscribed": unsubscribed,
    }))
    .into_response()
}

pub async fn show(State(state): State<HttpState>, Query(link): Query<Link>) -> Response {
    match checked(&state, &link) {
        Ok(request) => described(&request, false),
        Err(refused) => refusal(refused),
    }
}

pub async fn confirm(
    State(state): State<HttpState>,
    Extension(request_id): Extension<RequestId>,
    Query(link): Query<Link>,
) -> Response {
    let request = match checked(&state, &link) {
        Ok(request) => request,
        Err(refused) => return refusal(refused),
    };
    match preferences::unsubscribe(&state.app, &request).await {
        Ok(()) => {
            metrics::counter!("notification_unsubscribes_total", "channel" => request.channel.as_str())
                .increment(1);
            described(&request, true)
        }
        Err(error) => api_error_response(&error, &request_id),
    }
}
