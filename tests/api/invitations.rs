//! Invitations: nobody joins a company without accepting, the inviter learns nothing about the
//! person behind an email, and one company reaches nothing of another's invitations.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::helpers::{
    INVITE_MEMBER, LOGIN, PASSWORD, TestApp, first_error_code, spawn_app, spawn_app_with, text,
};

const MY_INVITATIONS: &str =
    "{ myInvitations { id email roles status companyName companySlug invitedBy } }";
const ACCEPT: &str = "mutation A($id: ID!) { acceptInvitation(id: $id) { id status roles companySlug respondedAt } }";
const DECLINE: &str = "mutation D($id: ID!) { declineInvitation(id: $id) { id status } }";
const REVOKE: &str = "mutation R($id: ID!) { revokeInvitation(id: $id) { id status } }";
const DECLINE_WITH_TOKEN: &str =
    "mutation D($token: String!) { declineInvitationWithToken(token: $token) }";
const INVITATIONS: &str = "query I($status: InvitationStatus, $first: Int, $after: String) {
    invitations(status: $status, first: $first, after: $after) {
        edges { cursor node { id email status } } pageInfo { hasNextPage endCursor } } }";
const MEMBERS: &str = "{ members { user { id email name } roles } }";

fn member_emails(body: &Value) -> Vec<String> {
    body["data"]["members"]
        .as_array()
        .unwrap_or_else(|| panic!("members: {body}"))
        .iter()
        .map(|member| text(&member["user"]["email"]))
        .collect()
}

fn invitation_ids(body: &Value) -> Vec<String> {
    body["data"]["invitations"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("invitations: {body}"))
        .iter()
        .map(|edge| text(&edge["node"]["id"]))
        .collect()
}

fn reason(body: &Value) -> &str {
    body["errors"][0]["extensions"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a reason, got {body}"))
}

/// `inviteMember`'s answer with what necessarily differs between two invitations (ids, token,
/// address, times) blanked out: what remains must not depend on who the address belongs to.
fn shape(body: &Value) -> Value {
    let mut created = body["data"]["inviteMember"].clone();
    assert!(created["token"].is_string(), "inviteMember failed: {body}");
    created["token"] = json!("…");
    for field in ["id", "email", "createdAt", "expiresAt"] {
        created["invitation"][field] = json!("…");
    }
    created
}

async fn invite(app: &TestApp, token: &str, email: &str, roles: &[&str]) -> Value {
    app.graphql_as(
        token,
        INVITE_MEMBER,
        json!({ "email": email, "roles": roles }),
    )
    .await
}

async fn login_with_password(app: &TestApp, email: &str, company_slug: Option<&str>) -> Value {
    app.graphql(
        LOGIN,
        json!({ "input": { "email": email, "password": PASSWORD, "companySlug": company_slug } }),
    )
    .await
}

#[tokio::test]
async fn inviting_another_companys_user_reveals_nothing_and_changes_nothing_until_she_accepts() {
    let app = spawn_app().await;
    let victim_co = app.sign_up("victim-co", "RESTAURANT").await;
    let (_, token) = app
        .send_invitation(&victim_co.access_token, "vera@victim.test", &["STAFF"])
        .await;
    let joined = app.accept_with_token(&token, "Vera Victim").await;
    let vera_id = text(&joined["data"]["acceptInvitationWithToken"]["user"]["id"]);
    let attacker = app.sign_up("attacker-co", "RESTAURANT").await;

    let of_vera = invite(&app, &attacker.access_token, "vera@victim.test", &["STAFF"]).await;
    let of_nobody = invite(
        &app,
        &attacker.access_token,
        "nobody@nowhere.test",
        &["STAFF"],
    )
    .await;

    // The answer is the same for an address with an account and one without, and names nobody.
    assert_eq!(
        shape(&of_vera),
        shape(&of_nobody),
        "{of_vera} / {of_nobody}"
    );
    let answer = of_vera.to_string();
    assert!(!answer.contains("Vera Victim"), "{answer}");
    assert!(!answer.contains(&vera_id), "{answer}");
    assert_eq!(
        of_vera["data"]["inviteMember"]["invitation"]["status"],
        "PENDING"
    );
    // Nothing changed for her: one company, so her login needs no companySlug, and the
    // attacker's members do not include her.
    let vera = app.login("vera@victim.test", None).await;
    let attacker_members = app
        .graphql_as(&attacker.access_token, MEMBERS, json!({}))
        .await;
    assert!(
        !member_emails(&attacker_members).contains(&"vera@victim.test".to_string()),
        "{attacker_members}"
    );

    // She sees the invitation, and only after accepting it she belongs to both companies.
    let mine = app.graphql_as(&vera, MY_INVITATIONS, json!({})).await;
    let invitations = mine["data"]["myInvitations"].as_array().expect("a list");
    assert_eq!(invitations.len(), 1, "{mine}");
    assert_eq!(invitations[0]["companySlug"], "attacker-co");
    assert_eq!(invitations[0]["invitedBy"], "Admin");
    assert_eq!(invitations[0]["roles"], json!(["STAFF"]));
    let accepted = app
        .graphql_as(&vera, ACCEPT, json!({ "id": invitations[0]["id"] }))
        .await;
    assert_eq!(
        accepted["data"]["acceptInvitation"]["status"], "ACCEPTED",
        "{accepted}"
    );
    assert!(accepted["data"]["acceptInvitation"]["respondedAt"].is_string());

    let ambiguous = login_with_password(&app, "vera@victim.test", None).await;
    assert_eq!(first_error_code(&ambiguous), "VALIDATION", "{ambiguous}");
    assert_eq!(
        ambiguous["errors"][0]["extensions"]["field"],
        "input.companySlug"
    );
    app.login("vera@victim.test", Some("attacker-co")).await;
    let attacker_members = app
        .graphql_as(&attacker.access_token, MEMBERS, json!({}))
        .await;
    assert!(
        member_emails(&attacker_members).contains(&"vera@victim.test".to_string()),
        "{attacker_members}"
    );
    let mine = app.graphql_as(&vera, MY_INVITATIONS, json!({})).await;
    assert_eq!(mine["data"]["myInvitations"], json!([]), "{mine}");
}

#[tokio::test]
async fn a_new_person_accepts_with_the_token_once_and_is_logged_in_with_the_invited_roles() {
    let app = spawn_app().await;
    let tenant = app.sign_up("welcome-co", "RESTAURANT").await;
    let (id, token) = app
        .send_invitation(&tenant.access_token, "Nina@New.test", &["STAFF"])
        .await;

    let unknown = app.accept_with_token("inv_not-a-token", "Nina").await;
    let weak_password = app
        .graphql(
            crate::helpers::ACCEPT_WITH_TOKEN,
            json!({ "input": { "token": token, "name": "Nina", "password": "short" } }),
        )
        .await;
    let accepted = app.accept_with_token(&token, "Nina New").await;
    let again = app.accept_with_token(&token, "Nina Again").await;

    assert_eq!(first_error_code(&unknown), "NOT_FOUND", "{unknown}");
    assert_eq!(
        first_error_code(&weak_password),
        "VALIDATION",
        "{weak_password}"
    );
    let session = &accepted["data"]["acceptInvitationWithToken"];
    assert_eq!(session["company"]["slug"], "welcome-co", "{accepted}");
    assert_eq!(session["user"]["email"], "nina@new.test");
    assert_eq!(session["user"]["name"], "Nina New");
    assert_eq!(first_error_code(&again), "FORBIDDEN", "{again}");
    assert_eq!(reason(&again), "INVITATION_ACCEPTED");

    let nina = text(&session["accessToken"]);
    let members = app.graphql_as(&nina, MEMBERS, json!({})).await;
    let roles = members["data"]["members"]
        .as_array()
        .expect("STAFF reads members")
        .iter()
        .find(|member| member["user"]["email"] == "nina@new.test")
        .map(|member| member["roles"].clone());
    assert_eq!(roles, Some(json!(["STAFF"])), "{members}");
    let create_role = app
        .graphql_as(
            &nina,
            "mutation { createRole(name: \"MINE\", permissions: []) { name } }",
            json!({}),
        )
        .await;
    assert_eq!(first_error_code(&create_role), "FORBIDDEN");
    app.login("nina@new.test", None).await;
    let listed = app
        .graphql_as(
            &tenant.access_token,
            INVITATIONS,
            json!({ "status": "ACCEPTED" }),
        )
        .await;
    assert_eq!(invitation_ids(&listed), [id], "{listed}");
}

#[tokio::test]
async fn a_token_for_an_email_that_has_an_account_asks_her_to_log_in_and_changes_nothing() {
    let app = spawn_app().await;
    let home = app.sign_up("home-co", "RESTAURANT").await;
    let other = app.sign_up("other-co", "RESTAURANT").await;
    let (id, token) = app
        .send_invitation(&other.access_token, &home.admin_email, &["STAFF"])
        .await;

    let with_token = app.accept_with_token(&token, "Someone").await;

    assert_eq!(
        first_error_code(&with_token),
        "UNAUTHENTICATED",
        "{with_token}"
    );
    assert!(with_token["data"].is_null(), "{with_token}");
    app.login(&home.admin_email, None).await;
    let pending = app
        .graphql_as(
            &other.access_token,
            INVITATIONS,
            json!({ "status": "PENDING" }),
        )
        .await;
    assert_eq!(
        invitation_ids(&pending),
        std::slice::from_ref(&id),
        "{pending}"
    );
    // Logged in, she accepts it as her own.
    let accepted = app
        .graphql_as(&home.access_token, ACCEPT, json!({ "id": id }))
        .await;
    assert_eq!(
        accepted["data"]["acceptInvitation"]["status"], "ACCEPTED",
        "{accepted}"
    );
    app.login(&home.admin_email, Some("other-co")).await;
}

#[tokio::test]
async fn a_declined_invitation_changes_nothing_and_cannot_be_accepted_afterwards() {
    let app = spawn_app().await;
    let home = app.sign_up("decline-home", "RESTAURANT").await;
    let other = app.sign_up("decline-other", "RESTAURANT").await;
    let (id, _) = app
        .send_invitation(&other.access_token, &home.admin_email, &["STAFF"])
        .await;
    let (_, link) = app
        .send_invitation(&other.access_token, "stranger@decline.test", &["STAFF"])
        .await;

    let declined = app
        .graphql_as(&home.access_token, DECLINE, json!({ "id": id }))
        .await;
    let accept_after = app
        .graphql_as(&home.access_token, ACCEPT, json!({ "id": id }))
        .await;
    let declined_by_link = app
        .graphql(DECLINE_WITH_TOKEN, json!({ "token": link }))
        .await;
    let accept_declined_link = app.accept_with_token(&link, "Stranger").await;

    assert_eq!(
        declined["data"]["declineInvitation"]["status"], "DECLINED",
        "{declined}"
    );
    assert_eq!(
        first_error_code(&accept_after),
        "FORBIDDEN",
        "{accept_after}"
    );
    assert_eq!(reason(&accept_after), "INVITATION_DECLINED");
    assert_eq!(
        declined_by_link["data"]["declineInvitationWithToken"], true,
        "{declined_by_link}"
    );
    assert_eq!(reason(&accept_declined_link), "INVITATION_DECLINED");
    app.login(&home.admin_email, None).await;
    let members = app
        .graphql_as(&other.access_token, MEMBERS, json!({}))
        .await;
    assert_eq!(member_emails(&members), ["admin@decline-other.test"]);
    let declined = app
        .graphql_as(
            &other.access_token,
            INVITATIONS,
            json!({ "status": "DECLINED" }),
        )
        .await;
    assert_eq!(invitation_ids(&declined).len(), 2, "{declined}");
}

#[tokio::test]
async fn a_revoked_invitation_opens_nothing_by_id_or_by_token() {
    let app = spawn_app().await;
    let home = app.sign_up("revoke-home", "RESTAURANT").await;
    let other = app.sign_up("revoke-other", "RESTAURANT").await;
    let (id, token) = app
        .send_invitation(&other.access_token, &home.admin_email, &["STAFF"])
        .await;
    let (new_person, new_token) = app
        .send_invitation(&other.access_token, "new@revoke.test", &["STAFF"])
        .await;
    let (accepted_id, accepted_token) = app
        .send_invitation(&other.access_token, "joined@revoke.test", &["STAFF"])
        .await;
    app.accept_with_token(&accepted_token, "Joined").await;

    let revoked = app
        .graphql_as(&other.access_token, REVOKE, json!({ "id": id }))
        .await;
    let revoked_again = app
        .graphql_as(&other.access_token, REVOKE, json!({ "id": id }))
        .await;
    app.graphql_as(&other.access_token, REVOKE, json!({ "id": new_person }))
        .await;
    let revoke_accepted = app
        .graphql_as(&other.access_token, REVOKE, json!({ "id": accepted_id }))
        .await;
    let by_id = app
        .graphql_as(&home.access_token, ACCEPT, json!({ "id": id }))
        .await;
    let by_token = app.accept_with_token(&new_token, "New").await;
    let decline_by_token = app
        .graphql(DECLINE_WITH_TOKEN, json!({ "token": token }))
        .await;
    let mine = app
        .graphql_as(&home.access_token, MY_INVITATIONS, json!({}))
        .await;

    assert_eq!(
        revoked["data"]["revokeInvitation"]["status"], "REVOKED",
        "{revoked}"
    );
    assert_eq!(
        revoked_again["data"]["revokeInvitation"]["status"], "REVOKED",
        "{revoked_again}"
    );
    assert_eq!(
        first_error_code(&revoke_accepted),
        "CONFLICT",
        "{revoke_accepted}"
    );
    assert_eq!(reason(&by_id), "INVITATION_REVOKED", "{by_id}");
    assert_eq!(first_error_code(&by_token), "FORBIDDEN", "{by_token}");
    assert_eq!(reason(&by_token), "INVITATION_REVOKED");
    assert_eq!(reason(&decline_by_token), "INVITATION_REVOKED");
    assert_eq!(mine["data"]["myInvitations"], json!([]), "{mine}");
    let no_account = login_with_password(&app, "new@revoke.test", None).await;
    assert_eq!(
        first_error_code(&no_account),
        "UNAUTHENTICATED",
        "{no_account}"
    );
}

#[tokio::test]
async fn an_expired_invitation_cannot_be_accepted_and_no_longer_blocks_a_new_one() {
    let app = spawn_app().await;
    let home = app.sign_up("expiry-home", "RESTAURANT").await;
    let other = app.sign_up("expiry-other", "RESTAURANT").await;
    let (id, _) = app
        .send_invitation(&other.access_token, &home.admin_email, &["STAFF"])
        .await;
    let (_, token) = app
        .send_invitation(&other.access_token, "late@expiry.test", &["STAFF"])
        .await;
    let duplicate = invite(
        &app,
        &other.access_token,
        &home.admin_email.to_uppercase(),
        &["STAFF"],
    )
    .await;
    assert_eq!(first_error_code(&duplicate), "CONFLICT", "{duplicate}");

    // Seven days pass.
    entity::invitation::Entity::update_many()
        .col_expr(
            entity::invitation::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
        )
        .filter(
            entity::invitation::Column::CompanyId
                .eq(uuid::Uuid::parse_str(&other.company_id).expect("uuid")),
        )
        .exec(&app.db)
        .await
        .expect("invitations moved past their expiry");

    let by_id = app
        .graphql_as(&home.access_token, ACCEPT, json!({ "id": id }))
        .await;
    let by_token = app.accept_with_token(&token, "Late").await;
    let mine = app
        .graphql_as(&home.access_token, MY_INVITATIONS, json!({}))
        .await;
    let expired = app
        .graphql_as(
            &other.access_token,
            INVITATIONS,
            json!({ "status": "EXPIRED" }),
        )
        .await;
    let pending = app
        .graphql_as(
            &other.access_token,
            INVITATIONS,
            json!({ "status": "PENDING" }),
        )
        .await;
    let revoke_expired = app
        .graphql_as(&other.access_token, REVOKE, json!({ "id": id }))
        .await;
    let fresh = invite(&app, &other.access_token, &home.admin_email, &["STAFF"]).await;

    assert_eq!(first_error_code(&by_id), "FORBIDDEN", "{by_id}");
    assert_eq!(reason(&by_id), "INVITATION_EXPIRED");
    assert_eq!(reason(&by_token), "INVITATION_EXPIRED", "{by_token}");
    assert_eq!(mine["data"]["myInvitations"], json!([]), "{mine}");
    assert_eq!(invitation_ids(&expired).len(), 2, "{expired}");
    assert_eq!(invitation_ids(&pending).len(), 0, "{pending}");
    assert_eq!(
        first_error_code(&revoke_expired),
        "CONFLICT",
        "{revoke_expired}"
    );
    assert_eq!(
        fresh["data"]["inviteMember"]["invitation"]["status"], "PENDING",
        "{fresh}"
    );
    let mine = app
        .graphql_as(&home.access_token, MY_INVITATIONS, json!({}))
        .await;
    assert_eq!(
        mine["data"]["myInvitations"].as_array().map(Vec::len),
        Some(1),
        "{mine}"
    );
}

#[tokio::test]
async fn invitations_are_rate_limited_per_company() {
    let app = spawn_app_with(|settings| settings.rate_limits.invitations = 3).await;
    let busy = app.sign_up("busy-co", "RESTAURANT").await;
    let calm = app.sign_up("calm-co", "RESTAURANT").await;

    for index in 0..3 {
        let sent = invite(
            &app,
            &busy.access_token,
            &format!("p{index}@busy.test"),
            &["STAFF"],
        )
        .await;
        assert!(sent["data"]["inviteMember"].is_object(), "{sent}");
    }
    let over = invite(&app, &busy.access_token, "p3@busy.test", &["STAFF"]).await;
    let elsewhere = invite(&app, &calm.access_token, "p3@busy.test", &["STAFF"]).await;

    assert_eq!(first_error_code(&over), "RATE_LIMITED", "{over}");
    assert!(over["errors"][0]["extensions"]["retryAfter"].as_u64() > Some(0));
    assert!(elsewhere["data"]["inviteMember"].is_object(), "{elsewhere}");
    let listed = app
        .graphql_as(&busy.access_token, INVITATIONS, json!({ "first": 2 }))
        .await;
    assert_eq!(invitation_ids(&listed).len(), 2, "{listed}");
    let page = &listed["data"]["invitations"]["pageInfo"];
    assert_eq!(page["hasNextPage"], true);
    let rest = app
        .graphql_as(
            &busy.access_token,
            INVITATIONS,
            json!({ "first": 2, "after": page["endCursor"] }),
        )
        .await;
    assert_eq!(invitation_ids(&rest).len(), 1, "{rest}");
    assert_eq!(
        rest["data"]["invitations"]["pageInfo"]["hasNextPage"],
        false
    );
}

#[tokio::test]
async fn one_company_reaches_nothing_of_anothers_invitations_and_nobody_answers_anothers() {
    let app = spawn_app().await;
    let a = app.sign_up("inv-a", "RESTAURANT").await;
    let b = app.sign_up("inv-b", "RESTAURANT").await;
    let bystander = app.sign_up("inv-bystander", "RESTAURANT").await;
    let (a_invitation, _) = app
        .send_invitation(&a.access_token, &b.admin_email, &["STAFF"])
        .await;
    let unknown = uuid::Uuid::new_v4().to_string();

    let b_lists = app
        .graphql_as(&b.access_token, INVITATIONS, json!({}))
        .await;
    let b_revokes = app
        .graphql_as(&b.access_token, REVOKE, json!({ "id": a_invitation }))
        .await;
    let b_revokes_unknown = app
        .graphql_as(&b.access_token, REVOKE, json!({ "id": unknown }))
        .await;
    let bystander_accepts = app
        .graphql_as(
            &bystander.access_token,
            ACCEPT,
            json!({ "id": a_invitation }),
        )
        .await;
    let bystander_declines = app
        .graphql_as(
            &bystander.access_token,
            DECLINE,
            json!({ "id": a_invitation }),
        )
        .await;
    let bystander_accepts_unknown = app
        .graphql_as(&bystander.access_token, ACCEPT, json!({ "id": unknown }))
        .await;
    let bystander_mine = app
        .graphql_as(&bystander.access_token, MY_INVITATIONS, json!({}))
        .await;

    assert_eq!(invitation_ids(&b_lists), Vec::<String>::new(), "{b_lists}");
    assert_eq!(first_error_code(&b_revokes), "NOT_FOUND", "{b_revokes}");
    assert_eq!(
        b_revokes["errors"][0]["message"],
        b_revokes_unknown["errors"][0]["message"]
    );
    assert_eq!(first_error_code(&bystander_accepts), "NOT_FOUND");
    assert_eq!(first_error_code(&bystander_declines), "NOT_FOUND");
    assert_eq!(
        bystander_accepts["errors"][0]["message"],
        bystander_accepts_unknown["errors"][0]["message"]
    );
    assert_eq!(bystander_mine["data"]["myInvitations"], json!([]));
    // A's invitation is untouched and still B's admin's to answer.
    let a_lists = app
        .graphql_as(&a.access_token, INVITATIONS, json!({ "status": "PENDING" }))
        .await;
    assert_eq!(invitation_ids(&a_lists), [a_invitation], "{a_lists}");
    let b_mine = app
        .graphql_as(&b.access_token, MY_INVITATIONS, json!({}))
        .await;
    assert_eq!(b_mine["data"]["myInvitations"][0]["companySlug"], "inv-a");
}

#[tokio::test]
async fn only_people_who_manage_members_invite_list_and_revoke() {
    let app = spawn_app().await;
    let tenant = app.sign_up("perm-inv", "RESTAURANT").await;
    app.invite(&tenant.access_token, "staff@perm-inv.test", &["STAFF"])
        .await;
    let staff = app.login("staff@perm-inv.test", None).await;
    let (id, _) = app
        .send_invitation(&tenant.access_token, "someone@perm-inv.test", &["KITCHEN"])
        .await;
    let key = app
        .graphql_as(
            &tenant.access_token,
            "mutation { createApiKey(name: \"bot\", role: \"ADMIN\") { secret } }",
            json!({}),
        )
        .await;
    let key = text(&key["data"]["createApiKey"]["secret"]);

    let staff_invites = invite(&app, &staff, "other@perm-inv.test", &["STAFF"]).await;
    let staff_lists = app.graphql_as(&staff, INVITATIONS, json!({})).await;
    let staff_revokes = app.graphql_as(&staff, REVOKE, json!({ "id": id })).await;
    let key_invites = invite(&app, &key, "bot-friend@perm-inv.test", &["STAFF"]).await;
    let no_roles = invite(&app, &tenant.access_token, "empty@perm-inv.test", &[]).await;
    let unknown_role = invite(&app, &tenant.access_token, "odd@perm-inv.test", &["PILOT"]).await;
    let member_again = invite(
        &app,
        &tenant.access_token,
        "staff@perm-inv.test",
        &["KITCHEN"],
    )
    .await;

    assert_eq!(
        first_error_code(&staff_invites),
        "FORBIDDEN",
        "{staff_invites}"
    );
    assert_eq!(first_error_code(&staff_lists), "FORBIDDEN", "{staff_lists}");
    assert_eq!(
        first_error_code(&staff_revokes),
        "FORBIDDEN",
        "{staff_revokes}"
    );
    assert_eq!(first_error_code(&key_invites), "FORBIDDEN", "{key_invites}");
    assert_eq!(first_error_code(&no_roles), "VALIDATION", "{no_roles}");
    assert_eq!(
        first_error_code(&unknown_role),
        "VALIDATION",
        "{unknown_role}"
    );
    assert_eq!(
        first_error_code(&member_again),
        "CONFLICT",
        "{member_again}"
    );
    let pending = app
        .graphql_as(
            &tenant.access_token,
            INVITATIONS,
            json!({ "status": "PENDING" }),
        )
        .await;
    assert_eq!(invitation_ids(&pending), [id], "{pending}");
}

#[tokio::test]
async fn an_invitation_never_carries_more_than_its_sender_still_holds() {
    let app = spawn_app().await;
    let tenant = app.sign_up("sender-co", "RESTAURANT").await;
    let lead_id = app
        .invite(
            &tenant.access_token,
            "lead@sender-co.test",
            &["STAFF", "ADMIN"],
        )
        .await;
    let lead = app.login("lead@sender-co.test", None).await;
    let (_, admin_only) = app
        .send_invitation(&lead, "accomplice@sender.test", &["ADMIN"])
        .await;
    let (_, staff_and_admin) = app
        .send_invitation(&lead, "colleague@sender.test", &["STAFF", "ADMIN"])
        .await;
    let (_, from_leaver) = app
        .send_invitation(&tenant.access_token, "x@sender.test", &["KITCHEN"])
        .await;
    let leaver_id = app
        .invite(&tenant.access_token, "leaver@sender-co.test", &["ADMIN"])
        .await;
    let leaver = app.login("leaver@sender-co.test", None).await;
    let (_, left_behind) = app
        .send_invitation(&leaver, "friend@sender.test", &["KITCHEN"])
        .await;

    // The lead loses ADMIN, the leaver leaves; then their invitations are accepted.
    let demoted = app
        .graphql_as(
            &tenant.access_token,
            "mutation R($id: ID!) { revokeRole(userId: $id, role: \"ADMIN\") { roles } }",
            json!({ "id": lead_id }),
        )
        .await;
    assert_eq!(
        demoted["data"]["revokeRole"]["roles"],
        json!(["STAFF"]),
        "{demoted}"
    );
    let removed = app
        .graphql_as(
            &tenant.access_token,
            "mutation R($id: ID!) { removeMember(userId: $id) }",
            json!({ "id": leaver_id }),
        )
        .await;
    assert_eq!(removed["data"]["removeMember"], true, "{removed}");
    let accomplice = app.accept_with_token(&admin_only, "Accomplice").await;
    let colleague = app.accept_with_token(&staff_and_admin, "Colleague").await;
    let friend = app.accept_with_token(&left_behind, "Friend").await;
    let unaffected = app.accept_with_token(&from_leaver, "X").await;

    assert_eq!(first_error_code(&accomplice), "CONFLICT", "{accomplice}");
    assert_eq!(first_error_code(&friend), "CONFLICT", "{friend}");
    assert!(
        unaffected["data"]["acceptInvitationWithToken"].is_object(),
        "{unaffected}"
    );
    let colleague_id = text(&colleague["data"]["acceptInvitationWithToken"]["user"]["id"]);
    let members = app
        .graphql_as(&tenant.access_token, MEMBERS, json!({}))
        .await;
    let roles_of = |email: &str| {
        members["data"]["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|member| member["user"]["email"] == email)
            .map(|member| member["roles"].clone())
    };
    assert_eq!(
        roles_of("colleague@sender.test"),
        Some(json!(["STAFF"])),
        "{members}"
    );
    assert_eq!(roles_of("accomplice@sender.test"), None, "{members}");
    assert_eq!(roles_of("friend@sender.test"), None, "{members}");
    assert!(members.to_string().contains(&colleague_id));
    // A refused acceptance created no account either.
    let no_account = login_with_password(&app, "accomplice@sender.test", None).await;
    assert_eq!(
        first_error_code(&no_account),
        "UNAUTHENTICATED",
        "{no_account}"
    );
}
