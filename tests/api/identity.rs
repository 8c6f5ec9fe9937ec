//! Sign-up, login, tokens and their attacks, sessions across companies, suspension.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::helpers::{
    LOGIN, PASSWORD, TestApp, first_error_code, forge, spawn_app, spawn_app_with, text,
};

const ME: &str = "{ me { id email } company { id slug status } }";
const REFRESH: &str = "mutation Refresh($token: String!) { refreshToken(refreshToken: $token) {
    accessToken refreshToken company { id } } }";

#[tokio::test]
async fn sign_up_creates_a_company_whose_admin_is_logged_in() {
    let app = spawn_app().await;

    let tenant = app.sign_up("cantina", "RESTAURANT").await;
    let me = app.graphql_as(&tenant.access_token, ME, json!({})).await;

    assert_eq!(me["data"]["me"]["email"], "admin@cantina.test", "{me}");
    assert_eq!(me["data"]["company"]["slug"], "cantina");
    assert_eq!(me["data"]["company"]["status"], "ACTIVE");
}

#[tokio::test]
async fn sign_up_input_is_validated_field_by_field() {
    let app = spawn_app().await;
    app.sign_up("taken", "GENERIC").await;
    let base = json!({ "companyName": "X", "companySlug": "fresh-slug", "businessType": "CLINIC",
                       "name": "Ana", "email": "ana@x.test", "password": PASSWORD });
    let cases = [
        ("companySlug", json!("taken"), "input.companySlug"),
        ("companySlug", json!("Not A Slug!"), "input.companySlug"),
        ("email", json!("not-an-email"), "input.email"),
        ("password", json!("short"), "input.password"),
        ("currency", json!("XYZ"), "input.currency"),
        ("timezone", json!("Mars/Base"), "input.timezone"),
        ("locale", json!("fr-FR"), "input.locale"),
    ];
    for (key, value, field) in cases {
        let mut input = base.clone();
        input[key] = value;
        let body = app
            .graphql(crate::helpers::SIGN_UP, json!({ "input": input }))
            .await;
        assert_eq!(first_error_code(&body), "VALIDATION", "{key}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["field"], field,
            "{key}: {body}"
        );
    }
    let members: Value = app
        .graphql(
            LOGIN,
            json!({ "input": { "email": "ana@x.test", "password": PASSWORD } }),
        )
        .await;
    assert_eq!(
        first_error_code(&members),
        "UNAUTHENTICATED",
        "nothing was written"
    );
}

#[tokio::test]
async fn sign_up_can_be_turned_off() {
    let app = spawn_app_with(|settings| settings.signup_enabled = false).await;
    let body = app
        .graphql(
            crate::helpers::SIGN_UP,
            json!({ "input": { "companyName": "X", "companySlug": "x-co", "businessType": "GENERIC",
                "name": "Ana", "email": "ana@x.test", "password": PASSWORD } }),
        )
        .await;
    assert_eq!(first_error_code(&body), "FORBIDDEN", "{body}");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_account_look_the_same() {
    let app = spawn_app().await;
    let tenant = app.sign_up("pedal", "BIKE_SHOP").await;

    let wrong = app
        .graphql(
            LOGIN,
            json!({ "input": { "email": tenant.admin_email, "password": "wrong password!" } }),
        )
        .await;
    let unknown = app
        .graphql(
            LOGIN,
            json!({ "input": { "email": "nobody@x.test", "password": PASSWORD } }),
        )
        .await;

    assert_eq!(first_error_code(&wrong), "UNAUTHENTICATED");
    assert_eq!(
        wrong["errors"][0]["message"],
        unknown["errors"][0]["message"]
    );
}

#[tokio::test]
async fn every_jwt_attack_is_refused() {
    let app = spawn_app().await;
    let tenant = app.sign_up("jwt-target", "GENERIC").await;
    let secret = app.settings.jwt_secret.clone().expect("tests set a secret");
    let secret = secret.expose();
    let now = chrono::Utc::now().timestamp();
    let claims = |changes: Value| {
        let mut claims = json!({ "sub": tenant.admin_id, "cid": tenant.company_id, "iss": "platform",
            "aud": "platform-api", "iat": now, "exp": now + 600, "jti": uuid::Uuid::new_v4(),
            "typ": "access" });
        for (key, value) in changes.as_object().expect("object") {
            claims[key] = value.clone();
        }
        claims
    };
    let hs256 = json!({ "alg": "HS256", "typ": "JWT" });
    let genuine = forge(secret, hs256.clone(), claims(json!({})));
    assert!(
        app.graphql_as(&genuine, ME, json!({})).await["data"]["me"].is_object(),
        "the forger must produce a token the server accepts, or the cases below prove nothing"
    );
    let mut tampered = genuine.clone();
    let position = genuine.len() - 5;
    let replacement = if &genuine[position..=position] == "x" {
        "y"
    } else {
        "x"
    };
    tampered.replace_range(position..=position, replacement);
    let cases = [
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                URL_SAFE_NO_PAD.encode(claims(json!({})).to_string())
            ),
        ),
        (
            "HS384",
            forge(secret, json!({ "alg": "HS384" }), claims(json!({}))),
        ),
        (
            "another secret",
            forge(
                "someone-elses-secret-of-enough-length",
                hs256.clone(),
                claims(json!({})),
            ),
        ),
        (
            "wrong issuer",
            forge(secret, hs256.clone(), claims(json!({ "iss": "evil" }))),
        ),
        (
            "wrong audience",
            forge(secret, hs256.clone(), claims(json!({ "aud": "other" }))),
        ),
        (
            "refresh type",
            forge(secret, hs256.clone(), claims(json!({ "typ": "refresh" }))),
        ),
        (
            "expired",
            forge(secret, hs256.clone(), claims(json!({ "exp": now - 30 }))),
        ),
        ("tampered", tampered),
        ("garbage", "abc.def.ghi".into()),
    ];
    for (name, token) in cases {
        let response = app
            .client
            .post(format!("{}/graphql", app.address))
            .bearer_auth(&token)
            .json(&json!({ "query": ME }))
            .send()
            .await
            .expect("reachable");
        assert_eq!(response.status(), 401, "{name}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(first_error_code(&body), "UNAUTHENTICATED", "{name}: {body}");
    }
}

async fn refresh(app: &TestApp, token: &str) -> Value {
    app.graphql(REFRESH, json!({ "token": token })).await
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    // No grace window: any second use of a rotated token is reuse.
    let app = spawn_app_with(|settings| settings.refresh_grace_secs = 0).await;
    let tenant = app.sign_up("rotation", "GENERIC").await;

    let first = refresh(&app, &tenant.refresh_token).await;
    let second_token = text(&first["data"]["refreshToken"]["refreshToken"]);
    let reuse = refresh(&app, &tenant.refresh_token).await;
    let after_reuse = refresh(&app, &second_token).await;

    assert_ne!(second_token, tenant.refresh_token);
    assert_eq!(first_error_code(&reuse), "UNAUTHENTICATED");
    assert_eq!(
        first_error_code(&after_reuse),
        "UNAUTHENTICATED",
        "the thief's reuse must also end the legitimate chain: {after_reuse}"
    );
}

#[tokio::test]
async fn of_two_concurrent_refreshes_one_rotates_and_both_get_its_successor() {
    let app = spawn_app().await;
    let tenant = app.sign_up("race", "GENERIC").await;
    let mut token = tenant.refresh_token.clone();
    for _ in 0..10 {
        let (a, b) = tokio::join!(refresh(&app, &token), refresh(&app, &token));
        let successors: Vec<String> = [&a, &b]
            .iter()
            .map(|body| text(&body["data"]["refreshToken"]["refreshToken"]))
            .collect();
        assert_eq!(successors[0], successors[1], "{a}\n{b}");
        assert_ne!(successors[0], token);
        token = successors[0].clone();
    }
    let next = refresh(&app, &token).await;
    assert!(
        next["data"]["refreshToken"].is_object(),
        "the chain goes on: {next}"
    );
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let app = spawn_app().await;
    let tenant = app.sign_up("bye", "GENERIC").await;

    let logout = app
        .graphql(
            "mutation Out($token: String!) { logout(refreshToken: $token) }",
            json!({ "token": tenant.refresh_token }),
        )
        .await;

    assert_eq!(logout["data"]["logout"], true, "{logout}");
    assert_eq!(
        first_error_code(&refresh(&app, &tenant.refresh_token).await),
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn changing_the_password_ends_every_session() {
    let app = spawn_app().await;
    let tenant = app.sign_up("newpass", "GENERIC").await;
    // Access tokens carry whole seconds; the change must fall in a later second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let changed = app
        .graphql_as(
            &tenant.access_token,
            "mutation { changePassword(currentPassword: \"correct horse battery staple\",
                newPassword: \"an even better passphrase\") }",
            json!({}),
        )
        .await;

    assert_eq!(changed["data"]["changePassword"], true, "{changed}");
    assert_eq!(
        first_error_code(&refresh(&app, &tenant.refresh_token).await),
        "UNAUTHENTICATED"
    );
    let old_token = app.graphql_as(&tenant.access_token, ME, json!({})).await;
    assert_eq!(
        first_error_code(&old_token),
        "UNAUTHENTICATED",
        "{old_token}"
    );
}

#[tokio::test]
async fn fifty_aliased_logins_count_fifty_times() {
    let app = spawn_app_with(|settings| {
        settings.graphql.max_aliases = 60;
        settings.graphql.max_root_fields = 60;
        settings.graphql.max_complexity = 100_000;
        settings.rate_limits.login_attempts = 5;
    })
    .await;
    let tenant = app.sign_up("brute", "GENERIC").await;
    let attempts: String = (0..50)
        .map(|i| {
            format!(
                "a{i}: login(input: {{ email: \"{}\", password: \"guess number {i}\" }}) {{ accessToken }} ",
                tenant.admin_email
            )
        })
        .collect();

    let body = app
        .graphql(&format!("mutation {{ {attempts} }}"), json!({}))
        .await;

    let codes: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| error["extensions"]["code"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(codes.len(), 50, "{body}");
    assert_eq!(
        codes
            .iter()
            .filter(|code| **code == "UNAUTHENTICATED")
            .count(),
        5
    );
    assert_eq!(
        codes.iter().filter(|code| **code == "RATE_LIMITED").count(),
        45
    );
    let right_password = app
        .graphql(
            LOGIN,
            json!({ "input": { "email": tenant.admin_email, "password": PASSWORD } }),
        )
        .await;
    assert_eq!(first_error_code(&right_password), "RATE_LIMITED");
    assert!(right_password["errors"][0]["extensions"]["retryAfter"].as_u64() > Some(0));
}

#[tokio::test]
async fn fifty_aliased_logins_are_refused_outright_by_default() {
    let app = spawn_app().await;
    let attempts: String = (0..50)
        .map(|i| {
            format!(
                "a{i}: login(input: {{ email: \"x@y.test\", password: \"p\" }}) {{ accessToken }} "
            )
        })
        .collect();
    let body = app
        .graphql(&format!("mutation {{ {attempts} }}"), json!({}))
        .await;
    assert_eq!(first_error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
}

#[tokio::test]
async fn api_calls_are_limited_per_actor() {
    let app = spawn_app_with(|settings| settings.rate_limits.api_calls = 3).await;
    let tenant = app.sign_up("busy", "GENERIC").await;
    for _ in 0..3 {
        let ok = app.graphql_as(&tenant.access_token, ME, json!({})).await;
        assert!(ok["data"]["me"].is_object(), "{ok}");
    }
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&tenant.access_token)
        .json(&json!({ "query": ME }))
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.expect("json");
    assert_eq!(first_error_code(&body), "RATE_LIMITED");
}

#[tokio::test]
async fn a_person_in_two_companies_gets_each_companys_permissions_after_switching() {
    let app = spawn_app().await;
    let first = app.sign_up("first-co", "RESTAURANT").await;
    let second = app.sign_up("second-co", "RESTAURANT").await;
    // The first company's admin joins the second as STAFF.
    app.invite_existing(
        &second.access_token,
        &first.access_token,
        &first.admin_email,
        &["STAFF"],
    )
    .await;
    let create_role = "mutation { createRole(name: \"SHIFT_LEAD\", permissions: [
        { resource: \"orders\", action: \"read\" }]) { name } }";

    let ambiguous = app
        .graphql(
            LOGIN,
            json!({ "input": { "email": first.admin_email, "password": PASSWORD } }),
        )
        .await;
    let as_admin = app.login(&first.admin_email, Some("first-co")).await;
    let switched = app
        .graphql_as(
            &as_admin,
            "mutation Switch($id: ID!) { switchCompany(companyId: $id) { accessToken company { slug } } }",
            json!({ "id": second.company_id }),
        )
        .await;
    let as_staff = text(&switched["data"]["switchCompany"]["accessToken"]);

    assert_eq!(
        ambiguous["errors"][0]["extensions"]["field"],
        "input.companySlug"
    );
    assert_eq!(
        switched["data"]["switchCompany"]["company"]["slug"],
        "second-co"
    );
    let in_first = app.graphql_as(&as_admin, create_role, json!({})).await;
    assert_eq!(
        in_first["data"]["createRole"]["name"], "SHIFT_LEAD",
        "{in_first}"
    );
    let in_second = app.graphql_as(&as_staff, create_role, json!({})).await;
    assert_eq!(first_error_code(&in_second), "FORBIDDEN", "{in_second}");
    let company = app.graphql_as(&as_staff, ME, json!({})).await;
    assert_eq!(company["data"]["company"]["slug"], "second-co");
}

/// Creates an operator (as `platform create-operator` does) and logs them in.
async fn operator_token(app: &TestApp, email: &str) -> String {
    api::services::identity::create_operator(&app.db, email, "Ops", PASSWORD.into())
        .await
        .expect("operator created");
    let login = app
        .graphql(
            "mutation Op($email: String!, $password: String!) { operatorLogin(email: $email, password: $password) { accessToken } }",
            json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    text(&login["data"]["operatorLogin"]["accessToken"])
}

#[tokio::test]
async fn an_operator_manages_companies_and_suspension_stops_tokens_and_keys_at_once() {
    let app = spawn_app().await;
    let tenant = app.sign_up("suspended-co", "GENERIC").await;
    let key = app
        .graphql_as(
            &tenant.access_token,
            "mutation { createApiKey(name: \"erp\", role: \"STAFF\") { secret } }",
            json!({}),
        )
        .await;
    let key = text(&key["data"]["createApiKey"]["secret"]);
    let operator = operator_token(&app, "ops@platform.test").await;
    let suspend = "mutation S($id: ID!) { operatorSuspendCompany(id: $id) { status } }";
    let reactivate = "mutation R($id: ID!) { operatorReactivateCompany(id: $id) { status } }";

    let listed = app
        .graphql_as(
            &operator,
            "{ operatorCompanies { totalCount companies { slug } } }",
            json!({}),
        )
        .await;
    let by_member = app
        .graphql_as(
            &tenant.access_token,
            "{ operatorCompanies { totalCount } }",
            json!({}),
        )
        .await;
    let suspended = app
        .graphql_as(&operator, suspend, json!({ "id": tenant.company_id }))
        .await;
    let with_token = app.graphql_as(&tenant.access_token, ME, json!({})).await;
    let with_key = app
        .graphql_as(&key, "{ members { roles } }", json!({}))
        .await;
    let refreshed = app
        .graphql(REFRESH, json!({ "token": tenant.refresh_token }))
        .await;
    app.graphql_as(&operator, reactivate, json!({ "id": tenant.company_id }))
        .await;
    let after = app.graphql_as(&tenant.access_token, ME, json!({})).await;

    assert_eq!(
        listed["data"]["operatorCompanies"]["totalCount"], 1,
        "{listed}"
    );
    assert_eq!(first_error_code(&by_member), "FORBIDDEN");
    assert_eq!(
        suspended["data"]["operatorSuspendCompany"]["status"],
        "SUSPENDED"
    );
    for body in [&with_token, &with_key, &refreshed] {
        assert_eq!(first_error_code(body), "FORBIDDEN", "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["reason"], "COMPANY_SUSPENDED",
            "{body}"
        );
    }
    assert!(after["data"]["me"].is_object(), "{after}");
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL"]
async fn a_suspension_on_one_instance_stops_tokens_on_another() {
    crate::helpers::require_shared_infrastructure();
    let first = spawn_app().await;
    let second = crate::helpers::spawn_second_instance(&first).await;
    let tenant = first.sign_up("suspended-two", "GENERIC").await;
    // The second instance has now seen (and keeps) the member's state.
    let before = second.graphql_as(&tenant.access_token, ME, json!({})).await;
    assert!(before["data"]["me"].is_object(), "{before}");
    let operator = operator_token(&first, "ops2@platform.test").await;
    let suspended = first
        .graphql_as(
            &operator,
            "mutation S($id: ID!) { operatorSuspendCompany(id: $id) { status } }",
            json!({ "id": tenant.company_id }),
        )
        .await;
    assert_eq!(
        suspended["data"]["operatorSuspendCompany"]["status"], "SUSPENDED",
        "{suspended}"
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let attempt = second.graphql_as(&tenant.access_token, ME, json!({})).await;
        if attempt["errors"][0]["extensions"]["reason"] == "COMPANY_SUSPENDED" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second instance still accepts the token after 2 s: {attempt}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admins_update_their_company_and_staff_cannot() {
    let app = spawn_app().await;
    let tenant = app.sign_up("settings-co", "PET_STORE").await;
    app.invite(&tenant.access_token, "staff@settings-co.test", &["STAFF"])
        .await;
    let staff = app.login("staff@settings-co.test", None).await;
    let update = "mutation U($input: UpdateCompanyInput!) { updateCompany(input: $input) {
        name locale timezone currency } }";

    let by_admin = app
        .graphql_as(
            &tenant.access_token,
            update,
            json!({ "input": { "name": "Pet Paradise", "locale": "en-US",
                "timezone": "Europe/Lisbon", "currency": "EUR" } }),
        )
        .await;
    let bad_currency = app
        .graphql_as(
            &tenant.access_token,
            update,
            json!({ "input": { "currency": "EURO" } }),
        )
        .await;
    let by_staff = app
        .graphql_as(&staff, update, json!({ "input": { "name": "Hijacked" } }))
        .await;

    assert_eq!(
        by_admin["data"]["updateCompany"],
        json!({ "name": "Pet Paradise", "locale": "en-US", "timezone": "Europe/Lisbon", "currency": "EUR" }),
        "{by_admin}"
    );
    assert_eq!(
        bad_currency["errors"][0]["extensions"]["field"],
        "input.currency"
    );
    assert_eq!(first_error_code(&by_staff), "FORBIDDEN");
    let company = app.graphql_as(&tenant.access_token, ME, json!({})).await;
    assert_eq!(company["data"]["company"]["slug"], "settings-co");
}

#[tokio::test]
async fn a_company_can_have_its_own_api_limit() {
    let app = spawn_app().await;
    let tenant = app.sign_up("limited-co", "GENERIC").await;
    let other = app.sign_up("unlimited-co", "GENERIC").await;
    api::services::identity::create_operator(&app.db, "ops@platform.test", "Ops", PASSWORD.into())
        .await
        .expect("operator created");
    let login = app
        .graphql(
            "mutation { operatorLogin(email: \"ops@platform.test\", password: \"correct horse battery staple\") { accessToken } }",
            json!({}),
        )
        .await;
    let operator = text(&login["data"]["operatorLogin"]["accessToken"]);

    let set = app
        .graphql_as(
            &operator,
            "mutation L($id: ID!) { operatorSetApiRateLimit(id: $id, apiCallsPerWindow: 2) { apiRateLimit } }",
            json!({ "id": tenant.company_id }),
        )
        .await;
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let body = app.graphql_as(&tenant.access_token, ME, json!({})).await;
        outcomes.push(
            body["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or("OK")
                .to_string(),
        );
    }
    let other_company = app.graphql_as(&other.access_token, ME, json!({})).await;

    assert_eq!(
        set["data"]["operatorSetApiRateLimit"]["apiRateLimit"], 2,
        "{set}"
    );
    assert_eq!(outcomes, ["OK", "OK", "RATE_LIMITED"]);
    assert!(other_company["data"]["me"].is_object(), "{other_company}");
}
