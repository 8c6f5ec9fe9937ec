//! Roles, members and API keys: who may grant what.

use serde_json::{Value, json};

use crate::helpers::{first_error_code, spawn_app, spawn_second_instance, text};

const ROLES: &str = "{ roles { name builtIn permissions { resource action } } }";
const MEMBERS: &str = "{ members { user { id email } roles } }";

fn role_names(body: &Value) -> Vec<String> {
    body["data"]["roles"]
        .as_array()
        .unwrap_or_else(|| panic!("roles: {body}"))
        .iter()
        .map(|role| text(&role["name"]))
        .collect()
}

#[tokio::test]
async fn companies_start_with_the_built_in_roles_of_their_business() {
    let app = spawn_app().await;
    let clinic = app.sign_up("clinic", "CLINIC").await;
    let bikes = app.sign_up("bikes", "BIKE_SHOP").await;

    let clinic_roles = role_names(&app.graphql_as(&clinic.access_token, ROLES, json!({})).await);
    let bike_roles = role_names(&app.graphql_as(&bikes.access_token, ROLES, json!({})).await);

    assert_eq!(
        clinic_roles,
        ["ADMIN", "KITCHEN", "PRACTITIONER", "RECEPTION", "STAFF"]
    );
    assert_eq!(bike_roles, ["ADMIN", "KITCHEN", "MECHANIC", "STAFF"]);
}

#[tokio::test]
async fn staff_cannot_create_roles_and_nothing_changes() {
    let app = spawn_app().await;
    let tenant = app.sign_up("kitchen-co", "RESTAURANT").await;
    app.invite(&tenant.access_token, "staff@kitchen-co.test", &["STAFF"])
        .await;
    let staff = app.login("staff@kitchen-co.test", None).await;
    let before = app.graphql_as(&tenant.access_token, ROLES, json!({})).await;

    let attempt = app
        .graphql_as(
            &staff,
            "mutation { createRole(name: \"SNEAKY\", permissions: [{ resource: \"orders\", action: \"read\" }]) { name } }",
            json!({}),
        )
        .await;

    assert_eq!(first_error_code(&attempt), "FORBIDDEN", "{attempt}");
    let after = app.graphql_as(&tenant.access_token, ROLES, json!({})).await;
    assert_eq!(before, after);
}

#[tokio::test]
async fn admins_manage_custom_roles_and_nobody_grants_what_they_do_not_hold() {
    let app = spawn_app().await;
    let tenant = app.sign_up("roles-co", "RESTAURANT").await;
    let created = app
        .graphql_as(
            &tenant.access_token,
            "mutation { createRole(name: \"PEOPLE_LEAD\", permissions: [
                { resource: \"members\", action: \"manage\" }, { resource: \"members\", action: \"read\" },
                { resource: \"roles\", action: \"manage\" }, { resource: \"orders\", action: \"read\" }]) {
                name builtIn permissions { resource action } } }",
            json!({}),
        )
        .await;
    assert_eq!(created["data"]["createRole"]["builtIn"], false, "{created}");
    app.invite(&tenant.access_token, "lead@roles-co.test", &["PEOPLE_LEAD"])
        .await;
    let lead = app.login("lead@roles-co.test", None).await;

    let escalate_role = app
        .graphql_as(
            &lead,
            "mutation { createRole(name: \"BIGGER\", permissions: [{ resource: \"orders\", action: \"delete\" }]) { name } }",
            json!({}),
        )
        .await;
    let grant_admin = app
        .graphql_as(
            &lead,
            "mutation { inviteMember(email: \"friend@x.test\", roles: [\"ADMIN\"]) { token } }",
            json!({}),
        )
        .await;
    let within_reach = app
        .graphql_as(
            &lead,
            "mutation { createRole(name: \"READER\", permissions: [{ resource: \"orders\", action: \"read\" }]) { name } }",
            json!({}),
        )
        .await;
    let duplicate = app
        .graphql_as(
            &tenant.access_token,
            "mutation { createRole(name: \"READER\", permissions: []) { name } }",
            json!({}),
        )
        .await;
    let unknown_permission = app
        .graphql_as(
            &tenant.access_token,
            "mutation { createRole(name: \"ODD\", permissions: [{ resource: \"rockets\", action: \"launch\" }]) { name } }",
            json!({}),
        )
        .await;
    let change_built_in = app
        .graphql_as(
            &tenant.access_token,
            "mutation { updateRole(name: \"STAFF\", permissions: []) { name } }",
            json!({}),
        )
        .await;

    assert_eq!(
        first_error_code(&escalate_role),
        "FORBIDDEN",
        "{escalate_role}"
    );
    assert_eq!(first_error_code(&grant_admin), "FORBIDDEN", "{grant_admin}");
    assert_eq!(
        within_reach["data"]["createRole"]["name"], "READER",
        "{within_reach}"
    );
    assert_eq!(first_error_code(&duplicate), "CONFLICT", "{duplicate}");
    assert_eq!(first_error_code(&unknown_permission), "VALIDATION");
    assert_eq!(first_error_code(&change_built_in), "VALIDATION");
    let members = app
        .graphql_as(&tenant.access_token, MEMBERS, json!({}))
        .await;
    let emails: Vec<String> = members["data"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|member| text(&member["user"]["email"]))
        .collect();
    assert!(!emails.contains(&"friend@x.test".to_string()), "{members}");
}

#[tokio::test]
async fn the_last_admin_can_be_neither_demoted_nor_removed() {
    let app = spawn_app().await;
    let tenant = app.sign_up("lonely", "GENERIC").await;
    let vars = json!({ "id": tenant.admin_id });

    let demote = app
        .graphql_as(
            &tenant.access_token,
            "mutation D($id: ID!) { revokeRole(userId: $id, role: \"ADMIN\") { roles } }",
            vars.clone(),
        )
        .await;
    let remove = app
        .graphql_as(
            &tenant.access_token,
            "mutation R($id: ID!) { removeMember(userId: $id) }",
            vars.clone(),
        )
        .await;
    let second_admin = app
        .invite(&tenant.access_token, "second@lonely.test", &["ADMIN"])
        .await;
    let demote_now = app
        .graphql_as(
            &tenant.access_token,
            "mutation D($id: ID!) { revokeRole(userId: $id, role: \"ADMIN\") { roles } }",
            json!({ "id": second_admin }),
        )
        .await;

    assert_eq!(first_error_code(&demote), "CONFLICT", "{demote}");
    assert_eq!(first_error_code(&remove), "CONFLICT", "{remove}");
    assert_eq!(
        demote_now["data"]["revokeRole"]["roles"],
        json!([]),
        "{demote_now}"
    );
}

#[tokio::test]
async fn api_keys_act_with_their_role_and_no_more() {
    let app = spawn_app().await;
    let tenant = app.sign_up("keys-co", "RESTAURANT").await;
    let created = app
        .graphql_as(
            &tenant.access_token,
            "mutation { createApiKey(name: \"erp\", role: \"STAFF\") { secret apiKey { id role lastUsedAt } } }",
            json!({}),
        )
        .await;
    let secret = text(&created["data"]["createApiKey"]["secret"]);
    let key_id = text(&created["data"]["createApiKey"]["apiKey"]["id"]);
    assert!(secret.starts_with("pk_"));

    let by_header = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("x-api-key", &secret)
        .json(&json!({ "query": MEMBERS }))
        .send()
        .await
        .expect("reachable")
        .json::<Value>()
        .await
        .expect("json");
    let manage_roles = app
        .graphql_as(
            &secret,
            "mutation { createRole(name: \"BOT\", permissions: [{ resource: \"orders\", action: \"read\" }]) { name } }",
            json!({}),
        )
        .await;
    let make_keys = app
        .graphql_as(
            &secret,
            "mutation { createApiKey(name: \"child\", role: \"STAFF\") { secret } }",
            json!({}),
        )
        .await;
    let listed = app
        .graphql_as(
            &tenant.access_token,
            "{ apiKeys { id lastUsedAt } }",
            json!({}),
        )
        .await;
    app.graphql_as(
        &tenant.access_token,
        "mutation R($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
        json!({ "id": key_id }),
    )
    .await;
    let revoked = app.graphql_as(&secret, MEMBERS, json!({})).await;

    assert!(by_header["data"]["members"].is_array(), "{by_header}");
    assert_eq!(first_error_code(&manage_roles), "FORBIDDEN");
    assert_eq!(first_error_code(&make_keys), "FORBIDDEN");
    assert!(
        listed["data"]["apiKeys"][0]["lastUsedAt"].is_string(),
        "{listed}"
    );
    assert_eq!(first_error_code(&revoked), "UNAUTHENTICATED");
}

#[tokio::test]
async fn an_api_key_never_carries_more_than_its_creator() {
    let app = spawn_app().await;
    let tenant = app.sign_up("limits-co", "GENERIC").await;
    app.graphql_as(
        &tenant.access_token,
        "mutation { createRole(name: \"INTEGRATOR\", permissions: [
            { resource: \"api_keys\", action: \"manage\" }, { resource: \"members\", action: \"read\" }]) { name } }",
        json!({}),
    )
    .await;
    let integrator_id = app
        .invite(&tenant.access_token, "int@limits-co.test", &["INTEGRATOR"])
        .await;
    let integrator = app.login("int@limits-co.test", None).await;

    let admin_key = app
        .graphql_as(
            &integrator,
            "mutation { createApiKey(name: \"god\", role: \"ADMIN\") { secret } }",
            json!({}),
        )
        .await;
    let own_key = app
        .graphql_as(
            &integrator,
            "mutation { createApiKey(name: \"mine\", role: \"INTEGRATOR\") { secret } }",
            json!({}),
        )
        .await;
    let own_key = text(&own_key["data"]["createApiKey"]["secret"]);
    let works = app.graphql_as(&own_key, MEMBERS, json!({})).await;
    app.graphql_as(
        &tenant.access_token,
        "mutation R($id: ID!) { removeMember(userId: $id) }",
        json!({ "id": integrator_id }),
    )
    .await;
    let after_creator_left = app.graphql_as(&own_key, MEMBERS, json!({})).await;

    assert_eq!(first_error_code(&admin_key), "FORBIDDEN", "{admin_key}");
    assert!(works["data"]["members"].is_array(), "{works}");
    assert_eq!(first_error_code(&after_creator_left), "UNAUTHENTICATED");
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL"]
async fn a_role_revoked_on_one_instance_is_refused_on_another() {
    crate::helpers::require_shared_infrastructure();
    let first = spawn_app().await;
    let second = spawn_second_instance(&first).await;
    let tenant = first.sign_up("two-instances", "RESTAURANT").await;
    let lead_id = first
        .invite(&tenant.access_token, "lead@two.test", &["STAFF", "ADMIN"])
        .await;
    let lead = second.login("lead@two.test", None).await;
    let create_role = "mutation { createRole(name: \"X_ROLE\", permissions: []) { name } }";
    assert!(second.graphql_as(&lead, ROLES, json!({})).await["data"]["roles"].is_array());

    let revoked = first
        .graphql_as(
            &tenant.access_token,
            "mutation R($id: ID!) { revokeRole(userId: $id, role: \"ADMIN\") { roles } }",
            json!({ "id": lead_id }),
        )
        .await;
    assert_eq!(
        revoked["data"]["revokeRole"]["roles"],
        json!(["STAFF"]),
        "{revoked}"
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let attempt = second.graphql_as(&lead, create_role, json!({})).await;
        if first_error_code_or_none(&attempt) == Some("FORBIDDEN") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still allowed on the second instance after 2 s: {attempt}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn first_error_code_or_none(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}
