//! Company A can read or change nothing of company B: every query and mutation of the
//! identity issue, called by A's admin with B's ids, answers exactly as for ids that exist
//! nowhere.

use serde_json::{Value, json};

use crate::helpers::{spawn_app, text};

/// The error code, or `OK` when the operation succeeded.
fn outcome(body: &Value) -> String {
    match body["errors"][0]["extensions"]["code"].as_str() {
        Some(code) => code.to_string(),
        None => "OK".to_string(),
    }
}

#[tokio::test]
async fn an_admin_of_one_company_reaches_nothing_of_another() {
    let app = spawn_app().await;
    let a = app.sign_up("company-a", "RESTAURANT").await;
    let b = app.sign_up("company-b", "RESTAURANT").await;
    let b_member = app
        .invite(&b.access_token, "staff@company-b.test", &["STAFF"])
        .await;
    let b_key = app
        .graphql_as(
            &b.access_token,
            "mutation { createApiKey(name: \"b-erp\", role: \"STAFF\") { apiKey { id } } }",
            json!({}),
        )
        .await;
    let b_key = text(&b_key["data"]["createApiKey"]["apiKey"]["id"]);
    app.graphql_as(
        &b.access_token,
        "mutation { createRole(name: \"B_ONLY\", permissions: []) { name } }",
        json!({}),
    )
    .await;
    let random = || uuid::Uuid::new_v4().to_string();

    let mutations: [(&str, &str, String, String); 8] = [
        (
            "assignRole",
            "mutation M($id: ID!) { assignRole(userId: $id, role: \"STAFF\") { roles } }",
            b_member.clone(),
            random(),
        ),
        (
            "revokeRole",
            "mutation M($id: ID!) { revokeRole(userId: $id, role: \"STAFF\") { roles } }",
            b_member.clone(),
            random(),
        ),
        (
            "removeMember",
            "mutation M($id: ID!) { removeMember(userId: $id) }",
            b_member.clone(),
            random(),
        ),
        (
            "removeMember(admin)",
            "mutation M($id: ID!) { removeMember(userId: $id) }",
            b.admin_id.clone(),
            random(),
        ),
        (
            "revokeApiKey",
            "mutation M($id: ID!) { revokeApiKey(id: $id) { id } }",
            b_key.clone(),
            random(),
        ),
        (
            "switchCompany",
            "mutation M($id: ID!) { switchCompany(companyId: $id) { accessToken } }",
            b.company_id.clone(),
            random(),
        ),
        (
            "updateRole",
            "mutation M($id: String!) { updateRole(name: $id, permissions: []) { name } }",
            "B_ONLY".into(),
            "NO_SUCH_ROLE".into(),
        ),
        (
            "deleteRole",
            "mutation M($id: String!) { deleteRole(name: $id) }",
            "B_ONLY".into(),
            "NO_SUCH_ROLE".into(),
        ),
    ];
    for (name, query, b_id, unknown_id) in mutations {
        let with_b = app
            .graphql_as(&a.access_token, query, json!({ "id": b_id }))
            .await;
        let with_unknown = app
            .graphql_as(&a.access_token, query, json!({ "id": unknown_id }))
            .await;
        assert_eq!(outcome(&with_b), "NOT_FOUND", "{name}: {with_b}");
        assert_eq!(outcome(&with_b), outcome(&with_unknown), "{name}");
        assert_eq!(
            with_b["errors"][0]["message"], with_unknown["errors"][0]["message"],
            "{name}: the message must not tell B's ids apart"
        );
    }

    let lists = app
        .graphql_as(
            &a.access_token,
            "{ company { id } members { user { email } } roles { name } apiKeys { id } }",
            json!({}),
        )
        .await;
    let serialized = lists.to_string();
    assert_eq!(lists["data"]["company"]["id"], json!(a.company_id));
    for leaked in ["company-b.test", "B_ONLY", &b_key] {
        assert!(!serialized.contains(leaked), "{leaked} leaked: {lists}");
    }

    // B is untouched: its member still holds STAFF, its key and role still exist.
    let b_view = app
        .graphql_as(
            &b.access_token,
            "{ members { user { id } roles } roles { name } apiKeys { id revokedAt } }",
            json!({}),
        )
        .await;
    let b_serialized = b_view.to_string();
    assert!(b_serialized.contains("B_ONLY"), "{b_view}");
    assert_eq!(b_view["data"]["apiKeys"][0]["revokedAt"], Value::Null);
    let member = b_view["data"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|member| member["user"]["id"] == json!(b_member))
        .cloned()
        .expect("B's member is still there");
    assert_eq!(member["roles"], json!(["STAFF"]));
}
