//! Notification rules, preferences and consent end to end: rules managed over GraphQL, an
//! order moved to READY queuing its default rule's notification through the relay and the job
//! runtime (once, however often the event is relayed), opt-outs and consent honoured, critical
//! categories kept on, unsubscribe links, and one company's ids useless to another.

use std::time::Duration;

use api::{
    crypto::UnsubscribeTokens,
    db::tenant::CompanyId,
    domain::notification_rules::Category,
    notifications::Channel,
    services::notifications::preferences::{Subject, unsubscribe_token},
};
use chrono::Utc;
use entity::{job, notification, notification_preference, outbox};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, first_error_code, spawn_app, text};

const RULE_FIELDS: &str =
    "id name eventType conditions { field op value } recipient { kind userId roleName }
    channels templateName category delaySeconds enabled isDefault";

const RULES: &str = "{ notificationRules { id name eventType conditions { field op value }
    recipient { kind } channels templateName category isDefault enabled } }";

const SET_CUSTOMER_PREFERENCE: &str = "mutation S($customer: ID!, $category: NotificationCategory!,
    $channel: NotificationChannel!, $optedIn: Boolean!) {
    setCustomerNotificationPreference(customerId: $customer, category: $category, channel: $channel,
        optedIn: $optedIn) { category channel optedIn source } }";

const CUSTOMER_PREFERENCES: &str = "query P($customer: ID!) {
    customerNotificationPreferences(customerId: $customer) { category channel optedIn critical source } }";

/// A restaurant with a customer who has a phone and an email, and a product to order.
struct Restaurant {
    token: String,
    company_id: String,
    customer: String,
    product: String,
}

async fn restaurant(app: &TestApp, slug: &str) -> Restaurant {
    let tenant = app.sign_up(slug, "RESTAURANT").await;
    let created = app
        .graphql_as(
            &tenant.access_token,
            "mutation C($input: CreateCustomerInput!) { createCustomer(input: $input) { id } }",
            json!({ "input": { "name": "Ana", "phone": "+5511987654321", "email": "ana@example.com" } }),
        )
        .await;
    let customer = text(&created["data"]["createCustomer"]["id"]);
    let product = app
        .create_product(&tenant.access_token, &format!("{slug}-dish"), 4500, None)
        .await;
    Restaurant {
        token: tenant.access_token,
        company_id: tenant.company_id,
        customer,
        product,
    }
}

/// Calls `setCustomerNotificationPreference`; returns the whole response.
async fn set_customer_preference(
    app: &TestApp,
    token: &str,
    customer: &str,
    category: &str,
    channel: &str,
    opted_in: bool,
) -> Value {
    app.graphql_as(
        token,
        SET_CUSTOMER_PREFERENCE,
        json!({ "customer": customer, "category": category, "channel": channel, "optedIn": opted_in }),
    )
    .await
}

/// Creates an order and moves it to READY; returns its id.
async fn order_made_ready(app: &TestApp, shop: &Restaurant) -> String {
    let created = app
        .create_order(&shop.token, &shop.customer, &[(&shop.product, 1)])
        .await;
    let order = text(&created["data"]["createOrder"]["id"]);
    for status in ["CONFIRMED", "PREPARING", "READY"] {
        let moved = app.transition(&shop.token, &order, status, None).await;
        assert_eq!(
            moved["data"]["transitionOrder"]["status"], status,
            "{moved}"
        );
    }
    order
}

fn uuid(id: &str) -> Uuid {
    id.parse().expect("a uuid")
}

async fn notifications_of(app: &TestApp, customer: &str) -> Vec<notification::Model> {
    notification::Entity::find()
        .filter(notification::Column::CustomerId.eq(uuid(customer)))
        .all(&app.db)
        .await
        .expect("notifications")
}

/// Waits until the rules evaluation of the company's latest READY event has run; returns
/// that event's id.
async fn ready_evaluated(app: &TestApp, company: &str) -> Uuid {
    for _ in 0..600 {
        if let Some(event) = latest_ready_event(app, company).await {
            let evaluation = job::Entity::find()
                .filter(job::Column::Queue.eq("notifications.evaluate-rules"))
                .filter(job::Column::IdempotencyKey.eq(event.to_string()))
                .one(&app.db)
                .await
                .expect("jobs");
            if let Some(evaluation) = evaluation {
                assert_ne!(evaluation.status, "DEAD", "{evaluation:?}");
                if evaluation.status == "DONE" {
                    return event;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the READY event's rules were not evaluated");
}

async fn latest_ready_event(app: &TestApp, company: &str) -> Option<Uuid> {
    outbox::Entity::find()
        .filter(outbox::Column::CompanyId.eq(uuid(company)))
        .filter(outbox::Column::EventType.eq("order.status_changed"))
        .all(&app.db)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|row| row.payload.contains("\"to\":\"READY\""))
        .max_by_key(|row| row.id)
        .map(|row| row.event_id)
}

#[tokio::test]
async fn a_restaurant_starts_with_its_default_rule() {
    let app = spawn_app().await;
    let shop = restaurant(&app, "rules-defaults").await;

    let rules = app.graphql_as(&shop.token, RULES, json!({})).await;
    let rules = rules["data"]["notificationRules"]
        .as_array()
        .expect("rules")
        .clone();
    let ready = rules
        .iter()
        .find(|rule| rule["templateName"] == "order_ready")
        .expect("the order-ready rule");
    assert_eq!(ready["eventType"], "order.status_changed");
    assert_eq!(
        ready["conditions"],
        json!([{ "field": "to", "op": "EQ", "value": "READY" }])
    );
    assert_eq!(ready["recipient"]["kind"], "CUSTOMER");
    assert_eq!(ready["channels"], json!(["WHATSAPP", "SMS", "EMAIL"]));
    assert_eq!(ready["category"], "ORDERS");
    assert_eq!(ready["isDefault"], true);
    assert!(
        rules.iter().any(|rule| rule["eventType"] == "payment.paid"),
        "{rules:?}"
    );
}

#[tokio::test]
async fn an_order_made_ready_queues_one_whatsapp_notification_even_when_relayed_twice() {
    let app = spawn_app().await;
    let shop = restaurant(&app, "rules-ready").await;

    order_made_ready(&app, &shop).await;
    let event = ready_evaluated(&app, &shop.company_id).await;

    let queued = notifications_of(&app, &shop.customer).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    let sent = &queued[0];
    assert_eq!(sent.channel, "WHATSAPP");
    assert_eq!(sent.address.as_deref(), Some("+5511987654321"));
    assert_eq!(sent.template.as_deref(), Some("order_ready"));
    assert_eq!(sent.category, "orders");
    let variables: Value = serde_json::from_str(&sent.variables).expect("variables");
    assert_eq!(variables["event"]["to"], "READY");
    assert_eq!(variables["customer"]["name"], "Ana");
    assert_eq!(variables["company"]["name"], "Company rules-ready");
    assert_eq!(variables["order"]["status"], "READY");
    assert_eq!(variables["order"]["previous_status"], "PREPARING");
    assert_eq!(
        variables["order"]["total"],
        json!({ "minor": 4500, "currency": "BRL" })
    );
    // The link in the message opts Ana out of order news on WhatsApp.
    let link = text(&variables["notification"]["unsubscribe_url"]);
    let path = link
        .split_once("/notifications/")
        .expect("an unsubscribe link")
        .1;
    let shown: Value = app
        .get(&format!("/notifications/{path}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shown["channel"], "WHATSAPP", "{shown}");
    assert_eq!(shown["category"], "orders", "{shown}");
    let key = sent.idempotency_key.clone().expect("a key");
    assert!(key.ends_with(&format!("event:{event}")), "{key}");

    // The event comes round again: unrelayed, and its evaluation job gone.
    outbox::Entity::update_many()
        .col_expr(
            outbox::Column::RelayedAt,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(outbox::Column::Position, Expr::value(Option::<i64>::None))
        .filter(outbox::Column::EventId.eq(event))
        .exec(&app.db)
        .await
        .expect("unrelay");
    job::Entity::delete_many()
        .filter(job::Column::Queue.eq("notifications.evaluate-rules"))
        .filter(job::Column::IdempotencyKey.eq(event.to_string()))
        .exec(&app.db)
        .await
        .expect("forget the evaluation");
    let mut evaluated_again = false;
    for _ in 0..600 {
        let again = job::Entity::find()
            .filter(job::Column::IdempotencyKey.eq(event.to_string()))
            .filter(job::Column::Status.eq("DONE"))
            .count(&app.db)
            .await
            .expect("jobs");
        if again == 1 {
            evaluated_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(evaluated_again, "the event was not evaluated again");
    assert_eq!(notifications_of(&app, &shop.customer).await.len(), 1);
}

#[tokio::test]
async fn an_opted_out_customer_gets_nothing_and_one_channel_off_falls_back_to_the_next() {
    let app = spawn_app().await;
    let shop = restaurant(&app, "rules-opted-out").await;
    for channel in ["WHATSAPP", "SMS", "EMAIL"] {
        let set =
            set_customer_preference(&app, &shop.token, &shop.customer, "ORDERS", channel, false)
                .await;
        assert_eq!(
            set["data"]["setCustomerNotificationPreference"],
            json!({ "category": "ORDERS", "channel": channel, "optedIn": false, "source": "STAFF" }),
            "{set}"
        );
    }

    order_made_ready(&app, &shop).await;
    ready_evaluated(&app, &shop.company_id).await;
    // Nothing is sent; the delivery log keeps the first channel's notification, cancelled with
    // the reason.
    let held = notifications_of(&app, &shop.customer).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].status, "CANCELLED", "{held:?}");
    assert_eq!(held[0].channel, "WHATSAPP", "{held:?}");
    assert_eq!(
        held[0].last_error_code.as_deref(),
        Some("OPTED_OUT"),
        "{held:?}"
    );

    // Back on for SMS only: WhatsApp stays off, so the next order falls back to SMS.
    set_customer_preference(&app, &shop.token, &shop.customer, "ORDERS", "SMS", true).await;
    order_made_ready(&app, &shop).await;
    let mut queued = Vec::new();
    for _ in 0..600 {
        queued = notifications_of(&app, &shop.customer).await;
        queued.retain(|notification| notification.status != "CANCELLED");
        if !queued.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].channel, "SMS");
}

#[tokio::test]
async fn critical_categories_cannot_be_switched_off_and_marketing_needs_consent() {
    let app = spawn_app().await;
    let shop = restaurant(&app, "rules-critical").await;

    let mine = app
        .graphql_as(
            &shop.token,
            "mutation { setMyNotificationPreference(category: SECURITY, channel: EMAIL, optedIn: false) { optedIn } }",
            json!({}),
        )
        .await;
    assert_eq!(first_error_code(&mine), "VALIDATION", "{mine}");
    assert_eq!(mine["errors"][0]["extensions"]["field"], "input.category");
    let customers = set_customer_preference(
        &app,
        &shop.token,
        &shop.customer,
        "LEGAL",
        "WHATSAPP",
        false,
    )
    .await;
    assert_eq!(first_error_code(&customers), "VALIDATION", "{customers}");

    let off = app
        .graphql_as(
            &shop.token,
            "mutation { setMyNotificationPreference(category: ORDERS, channel: IN_APP, optedIn: false) { optedIn source } }",
            json!({}),
        )
        .await;
    assert_eq!(
        off["data"]["setMyNotificationPreference"],
        json!({ "optedIn": false, "source": "SELF" }),
        "{off}"
    );
    let listed = app
        .graphql_as(
            &shop.token,
            "{ myNotificationPreferences { category channel optedIn critical } }",
            json!({}),
        )
        .await;
    let listed = listed["data"]["myNotificationPreferences"]
        .as_array()
        .expect("preferences")
        .clone();
    assert_eq!(listed.len(), 24);
    let find = |category: &str, channel: &str| {
        listed
            .iter()
            .find(|p| p["category"] == category && p["channel"] == channel)
            .cloned()
            .expect("listed")
    };
    assert_eq!(find("ORDERS", "IN_APP")["optedIn"], false);
    assert_eq!(find("ORDERS", "EMAIL")["optedIn"], true);
    assert_eq!(find("SECURITY", "EMAIL")["critical"], true);

    let marketing_on_whatsapp = |body: &Value| {
        body["data"]["customerNotificationPreferences"]
            .as_array()
            .expect("preferences")
            .iter()
            .find(|p| p["category"] == "MARKETING" && p["channel"] == "WHATSAPP")
            .map(|p| p["optedIn"].clone())
            .expect("listed")
    };
    let before = app
        .graphql_as(
            &shop.token,
            CUSTOMER_PREFERENCES,
            json!({ "customer": shop.customer }),
        )
        .await;
    assert_eq!(marketing_on_whatsapp(&before), false, "{before}");
    let consent = app
        .graphql_as(
            &shop.token,
            "mutation R($input: RecordCustomerConsentInput!) { recordCustomerConsent(input: $input) {
                purpose channel source textVersion revokedAt recordedBy } }",
            json!({ "input": { "customerId": shop.customer, "purpose": "MARKETING", "channel": "WHATSAPP",
                    "source": "COUNTER", "textVersion": "2026-11" } }),
        )
        .await;
    assert_eq!(
        consent["data"]["recordCustomerConsent"]["textVersion"], "2026-11",
        "{consent}"
    );
    let consented = app
        .graphql_as(
            &shop.token,
            CUSTOMER_PREFERENCES,
            json!({ "customer": shop.customer }),
        )
        .await;
    assert_eq!(marketing_on_whatsapp(&consented), true, "{consented}");
    let revoke = "mutation V($customer: ID!) { revokeCustomerConsent(customerId: $customer,
        purpose: MARKETING, channel: WHATSAPP) }";
    let revoked = app
        .graphql_as(&shop.token, revoke, json!({ "customer": shop.customer }))
        .await;
    assert_eq!(revoked["data"]["revokeCustomerConsent"], true, "{revoked}");
    let again = app
        .graphql_as(&shop.token, revoke, json!({ "customer": shop.customer }))
        .await;
    assert_eq!(again["data"]["revokeCustomerConsent"], false, "{again}");
    let after = app
        .graphql_as(
            &shop.token,
            CUSTOMER_PREFERENCES,
            json!({ "customer": shop.customer }),
        )
        .await;
    assert_eq!(marketing_on_whatsapp(&after), false, "{after}");
}

#[tokio::test]
async fn rules_are_validated_created_changed_and_deleted() {
    let app = spawn_app().await;
    let shop = restaurant(&app, "rules-crud").await;
    let create = format!(
        "mutation C($input: CreateNotificationRuleInput!) {{ createNotificationRule(input: $input) {{ {RULE_FIELDS} }} }}"
    );
    let input = json!({
        "name": "Big order to the kitchen", "eventType": "order.created",
        "conditions": [{ "field": "totalMinor", "op": "GTE", "value": 10000 }],
        "recipient": { "kind": "ROLE", "roleName": "KITCHEN" },
        "channels": ["IN_APP", "EMAIL"], "templateName": "order_status_changed", "category": "ORDERS",
        "delaySeconds": 60 });

    let invalid = [
        ("eventType", json!("order.teleported"), "input.eventType"),
        // Each notification a rule on these sent would fire the rule again.
        ("eventType", json!("notification.sent"), "input.eventType"),
        ("eventType", json!("notification.failed"), "input.eventType"),
        (
            "eventType",
            json!("notification.delivered"),
            "input.eventType",
        ),
        (
            "conditions",
            json!([{ "field": "totalMinor", "op": "GT", "value": "lots" }]),
            "input.conditions.0",
        ),
        ("channels", json!([]), "input.channels"),
        ("channels", json!(["EMAIL", "EMAIL"]), "input.channels"),
        ("templateName", json!("Order Ready!"), "input.templateName"),
        ("templateName", json!("big_order"), "input.templateName"),
        ("delaySeconds", json!(-1), "input.delaySeconds"),
        (
            "recipient",
            json!({ "kind": "ROLE", "roleName": "ASTRONAUT" }),
            "input.recipient",
        ),
    ];
    for (field, value, reported) in invalid {
        let mut bad = input.clone();
        bad[field] = value;
        let refused = app
            .graphql_as(&shop.token, &create, json!({ "input": bad }))
            .await;
        assert_eq!(
            first_error_code(&refused),
            "VALIDATION",
            "{field}: {refused}"
        );
        assert_eq!(
            refused["errors"][0]["extensions"]["field"], reported,
            "{refused}"
        );
    }

    let created = app
        .graphql_as(&shop.token, &create, json!({ "input": input }))
        .await;
    let rule = &created["data"]["createNotificationRule"];
    assert_eq!(rule["recipient"]["roleName"], "KITCHEN", "{created}");
    assert_eq!(rule["channels"], json!(["IN_APP", "EMAIL"]));
    assert_eq!(rule["isDefault"], false);
    let id = text(&rule["id"]);
    let duplicate = app
        .graphql_as(&shop.token, &create, json!({ "input": input }))
        .await;
    assert_eq!(first_error_code(&duplicate), "CONFLICT", "{duplicate}");

    let updated = app
        .graphql_as(
            &shop.token,
            &format!("mutation U($id: ID!) {{ updateNotificationRule(id: $id, input: {{ enabled: false,
                conditions: [{{ field: \"to\", op: IN, value: [\"READY\", \"DELIVERED\"] }}] }}) {{ {RULE_FIELDS} }} }}"),
            json!({ "id": id }),
        )
        .await;
    let rule = &updated["data"]["updateNotificationRule"];
    assert_eq!(rule["enabled"], false, "{updated}");
    assert_eq!(
        rule["conditions"][0]["value"],
        json!(["READY", "DELIVERED"])
    );
    assert_eq!(rule["templateName"], "order_status_changed");
    for (change, reported) in [
        ("eventType: \"notification.sent\"", "input.eventType"),
        ("templateName: \"big_order\"", "input.templateName"),
    ] {
        let refused = app
            .graphql_as(
                &shop.token,
                &format!("mutation U($id: ID!) {{ updateNotificationRule(id: $id, input: {{ {change} }}) {{ id }} }}"),
                json!({ "id": id }),
            )
            .await;
        assert_eq!(
            first_error_code(&refused),
            "VALIDATION",
            "{change}: {refused}"
        );
        assert_eq!(
            refused["errors"][0]["extensions"]["field"], reported,
            "{refused}"
        );
    }

    let delete = "mutation D($id: ID!) { deleteNotificationRule(id: $id) }";
    let deleted = app
        .graphql_as(&shop.token, delete, json!({ "id": id }))
        .await;
    assert_eq!(deleted["data"]["deleteNotificationRule"], true, "{deleted}");
    let again = app
        .graphql_as(&shop.token, delete, json!({ "id": id }))
        .await;
    assert_eq!(again["data"]["deleteNotificationRule"], false, "{again}");
}

#[tokio::test]
async fn a_member_without_notifications_manage_cannot_touch_rules() {
    let app = spawn_app().await;
    let shop = restaurant(&app, "rules-forbidden").await;
    let (_, invitation) = app
        .send_invitation(&shop.token, "cook@rules-forbidden.test", &["KITCHEN"])
        .await;
    let accepted = app.accept_with_token(&invitation, "Cook").await;
    let cook = text(&accepted["data"]["acceptInvitationWithToken"]["accessToken"]);

    let listed = app.graphql_as(&cook, RULES, json!({})).await;
    assert_eq!(first_error_code(&listed), "FORBIDDEN", "{listed}");
    let own = app
        .graphql_as(
            &cook,
            "mutation { setMyNotificationPreference(category: ORDERS, channel: IN_APP, optedIn: false) { optedIn } }",
            json!({}),
        )
        .await;
    assert_eq!(
        own["data"]["setMyNotificationPreference"]["optedIn"], false,
        "{own}"
    );
}

fn link_tokens(app: &TestApp) -> UnsubscribeTokens {
    UnsubscribeTokens::new(
        &app.settings
            .unsubscribe_secret
            .clone()
            .expect("tests set a secret"),
    )
}

#[tokio::test]
async fn an_unsubscribe_link_opts_out_at_once_and_a_tampered_or_expired_one_is_refused() {
    let app = spawn_app().await;
    let shop = restaurant(&app, "rules-unsubscribe").await;
    let tokens = link_tokens(&app);
    let company = CompanyId::from_row(uuid(&shop.company_id));
    let subject = Subject::Customer(uuid(&shop.customer));
    let token = unsubscribe_token(
        &tokens,
        company,
        subject,
        Category::Orders,
        Channel::Email,
        Utc::now(),
    );
    let url = |token: &str| format!("{}/notifications/unsubscribe?token={token}", app.address);

    let shown = app.client.get(url(&token)).send().await.expect("GET");
    assert_eq!(shown.status(), 200);
    let shown: Value = shown.json().await.expect("json");
    assert_eq!(
        shown,
        json!({ "category": "orders", "channel": "EMAIL", "critical": false, "unsubscribed": false })
    );
    // Looking at the link changes nothing.
    assert_eq!(
        notification_preference::Entity::find()
            .filter(notification_preference::Column::SubjectId.eq(uuid(&shop.customer)))
            .count(&app.db)
            .await
            .expect("count"),
        0
    );

    let confirmed = app.client.post(url(&token)).send().await.expect("POST");
    assert_eq!(confirmed.status(), 200);
    let confirmed: Value = confirmed.json().await.expect("json");
    assert_eq!(confirmed["unsubscribed"], true);
    let listed = app
        .graphql_as(
            &shop.token,
            CUSTOMER_PREFERENCES,
            json!({ "customer": shop.customer }),
        )
        .await;
    let email_orders = listed["data"]["customerNotificationPreferences"]
        .as_array()
        .expect("preferences")
        .iter()
        .find(|p| p["category"] == "ORDERS" && p["channel"] == "EMAIL")
        .cloned()
        .expect("listed");
    assert_eq!(email_orders["optedIn"], false, "{listed}");
    assert_eq!(email_orders["source"], "UNSUBSCRIBE_LINK");

    let [header, body, signature]: [&str; 3] = token
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .expect("a JWT");
    let other_customer = unsubscribe_token(
        &tokens,
        company,
        Subject::Customer(Uuid::now_v7()),
        Category::Orders,
        Channel::Email,
        Utc::now(),
    );
    let other_body = other_customer.split('.').nth(1).expect("a JWT");
    let expired = unsubscribe_token(
        &tokens,
        company,
        subject,
        Category::Orders,
        Channel::Whatsapp,
        Utc::now() - chrono::Duration::days(61),
    );
    let foreign = unsubscribe_token(
        &UnsubscribeTokens::new(&api::configuration::Secret::new("x".repeat(48))),
        company,
        subject,
        Category::Orders,
        Channel::Sms,
        Utc::now(),
    );
    for refused in [
        format!("{header}.{other_body}.{signature}"),
        format!("{header}.{body}.{}", &signature[2..]),
        expired,
        foreign,
    ] {
        for response in [
            app.client.get(url(&refused)).send().await.expect("GET"),
            app.client.post(url(&refused)).send().await.expect("POST"),
        ] {
            assert_eq!(response.status(), 403, "{refused}");
            let body: Value = response.json().await.expect("json");
            assert_eq!(first_error_code(&body), "FORBIDDEN", "{body}");
        }
    }
    let missing = app
        .client
        .post(format!("{}/notifications/unsubscribe", app.address))
        .send()
        .await
        .expect("POST");
    assert_eq!(missing.status(), 400);
    // Only the one opt-out the valid link asked for was recorded.
    assert_eq!(
        notification_preference::Entity::find()
            .count(&app.db)
            .await
            .expect("count"),
        1
    );
}

#[tokio::test]
async fn one_company_cannot_reach_anothers_rules_or_customers_preferences() {
    let app = spawn_app().await;
    let a = restaurant(&app, "rules-tenant-a").await;
    let b = restaurant(&app, "rules-tenant-b").await;
    let b_rules = app.graphql_as(&b.token, RULES, json!({})).await;
    let b_rule = text(&b_rules["data"]["notificationRules"][0]["id"]);

    let a_rules = app.graphql_as(&a.token, RULES, json!({})).await;
    assert!(
        a_rules["data"]["notificationRules"]
            .as_array()
            .expect("rules")
            .iter()
            .all(|rule| rule["id"] != b_rule.as_str()),
        "{a_rules}"
    );
    let update = app
        .graphql_as(
            &a.token,
            "mutation U($id: ID!) { updateNotificationRule(id: $id, input: { enabled: false }) { id } }",
            json!({ "id": b_rule }),
        )
        .await;
    assert_eq!(first_error_code(&update), "NOT_FOUND", "{update}");
    let delete = app
        .graphql_as(
            &a.token,
            "mutation D($id: ID!) { deleteNotificationRule(id: $id) }",
            json!({ "id": b_rule }),
        )
        .await;
    assert_eq!(delete["data"]["deleteNotificationRule"], false, "{delete}");

    let read = app
        .graphql_as(
            &a.token,
            CUSTOMER_PREFERENCES,
            json!({ "customer": b.customer }),
        )
        .await;
    assert_eq!(first_error_code(&read), "NOT_FOUND", "{read}");
    let set =
        set_customer_preference(&app, &a.token, &b.customer, "ORDERS", "WHATSAPP", false).await;
    assert_eq!(first_error_code(&set), "NOT_FOUND", "{set}");
    let consent = app
        .graphql_as(
            &a.token,
            "mutation R($input: RecordCustomerConsentInput!) { recordCustomerConsent(input: $input) { id } }",
            json!({ "input": { "customerId": b.customer, "purpose": "MARKETING", "channel": "SMS",
                    "source": "COUNTER", "textVersion": "1" } }),
        )
        .await;
    assert_eq!(first_error_code(&consent), "NOT_FOUND", "{consent}");
    let revoke = app
        .graphql_as(
            &a.token,
            "mutation V($customer: ID!) { revokeCustomerConsent(customerId: $customer, purpose: MARKETING, channel: SMS) }",
            json!({ "customer": b.customer }),
        )
        .await;
    assert_eq!(first_error_code(&revoke), "NOT_FOUND", "{revoke}");

    // B's rule is untouched and still notifies B's customer.
    let still = app.graphql_as(&b.token, RULES, json!({})).await;
    assert!(
        still["data"]["notificationRules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|rule| rule["id"] == b_rule.as_str() && rule["enabled"] == true),
        "{still}"
    );
    assert_eq!(
        notification_preference::Entity::find()
            .count(&app.db)
            .await
            .expect("count"),
        0
    );
}

#[tokio::test]
async fn a_stop_reply_on_whatsapp_opts_that_customer_out_of_whatsapp_at_once() {
    let app = spawn_app().await;
    let shop = restaurant(&app, "rules-stop").await;
    let secret = app
        .graphql_as(
            &shop.token,
            "mutation { setWebhookProviderSecret(provider: EVOLUTION, secret: \"evo-hook-secret-0123456789\") }",
            json!({}),
        )
        .await;
    assert!(secret["errors"].is_null(), "{secret}");
    let reply = |id: &str, text: &str| {
        let body = json!({ "event": "messages.upsert", "instance": "loja",
            "data": { "key": { "id": id, "fromMe": false, "remoteJid": "5511987654321@s.whatsapp.net" },
                "message": { "conversation": text } } });
        app.client
            .post(format!(
                "{}/webhooks/in/evolution/{}",
                app.address, shop.company_id
            ))
            .header("x-webhook-secret", "evo-hook-secret-0123456789")
            .json(&body)
            .send()
    };
    let whatsapp_opt_outs = || async {
        notification_preference::Entity::find()
            .filter(notification_preference::Column::SubjectId.eq(uuid(&shop.customer)))
            .filter(notification_preference::Column::Channel.eq("WHATSAPP"))
            .filter(notification_preference::Column::OptedIn.eq(false))
            .all(&app.db)
            .await
            .expect("preferences")
    };

    let chat = reply("MSG-1", "quero parar de receber?")
        .await
        .expect("sends");
    assert!(chat.status().is_success(), "{}", chat.status());
    assert!(whatsapp_opt_outs().await.is_empty());

    let stop = reply("MSG-2", " Parar. ").await.expect("sends");
    assert!(stop.status().is_success(), "{}", stop.status());
    let opted_out = whatsapp_opt_outs().await;
    let mut categories: Vec<&str> = opted_out.iter().map(|p| p.category.as_str()).collect();
    categories.sort_unstable();
    assert_eq!(
        categories,
        ["appointments", "billing", "marketing", "orders"],
        "critical ones stay on"
    );
    assert!(opted_out.iter().all(|p| p.source == "INBOUND_REPLY"));

    // The next order reaches the customer by SMS instead.
    order_made_ready(&app, &shop).await;
    ready_evaluated(&app, &shop.company_id).await;
    let queued = notifications_of(&app, &shop.customer).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].channel, "SMS");
}

/// A notification sent by hand honours the customer's preferences as the rules do: written
/// `CANCELLED` with the reason in the delivery log, never handed to a provider; a critical
/// category still goes out.
#[tokio::test]
async fn a_notification_sent_by_hand_to_an_opted_out_customer_is_cancelled_with_the_reason() {
    let app = spawn_app().await;
    let shop = restaurant(&app, "handsent").await;
    let set =
        set_customer_preference(&app, &shop.token, &shop.customer, "ORDERS", "SMS", false).await;
    assert!(set["errors"].is_null(), "{set}");
    let send = |category: &str, key: &str| {
        app.graphql_as(
            &shop.token,
            crate::notifications::SEND,
            json!({ "input": { "channel": "SMS", "category": category,
                "recipient": { "customerId": shop.customer }, "body": "Seu pedido saiu",
                "idempotencyKey": key } }),
        )
    };
    let sent = send("ORDERS", "by-hand-1").await;
    assert!(sent["errors"].is_null(), "{sent}");
    let notification = &sent["data"]["sendNotification"]["notification"];
    assert_eq!(notification["status"], "CANCELLED", "{sent}");
    let logged = crate::notifications::settled(&app, &shop.token, &text(&notification["id"])).await;
    assert_eq!(logged["lastErrorCode"], "OPTED_OUT", "{logged}");
    assert_eq!(logged["attemptCount"], 0, "{logged}");

    // Security notices cannot be switched off: no SMS provider is configured, so it fails at
    // the provider instead of being held back.
    let critical = send("SECURITY", "by-hand-2").await;
    let id = text(&critical["data"]["sendNotification"]["notification"]["id"]);
    let logged = crate::notifications::settled(&app, &shop.token, &id).await;
    assert_ne!(logged["lastErrorCode"], "OPTED_OUT", "{logged}");
}

/// The whole path: an order moved to READY, the restaurant's default rule and a rule of its
/// own for email; the WhatsApp message reaches a local Evolution API with the rendered text
/// and the customer's number, and the email reaches the company's SMTP server.
#[tokio::test]
async fn an_order_made_ready_reaches_the_customer_on_whatsapp_and_by_email() {
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{header, method, path},
    };

    let app = spawn_app().await;
    let shop = restaurant(&app, "rules-path").await;
    let evolution = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/message/sendText/cozinha"))
        .and(header("apikey", "evo-path-key"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({ "key": { "remoteJid": "5511987654321@s.whatsapp.net", "fromMe": true, "id": "BAE5PATH" } }),
        ))
        .expect(1)
        .mount(&evolution)
        .await;
    let smtp = crate::smtp::SmtpListener::start().await;
    for input in [
        json!({ "channel": "WHATSAPP", "provider": "EVOLUTION",
            "settings": { "baseUrl": evolution.uri(), "instance": "cozinha" },
            "credentials": { "apiKey": "evo-path-key" } }),
        json!({ "channel": "EMAIL", "provider": "SMTP",
            "settings": { "fromName": "Cantina", "fromAddress": "pedidos@cantina.example.com" },
            "credentials": { "url": smtp.url() } }),
    ] {
        let configured = app
            .graphql_as(
                &shop.token,
                crate::notifications::CONFIGURE,
                json!({ "input": input }),
            )
            .await;
        assert!(configured["errors"].is_null(), "{configured}");
    }
    let created = app
        .graphql_as(
            &shop.token,
            &format!("mutation C($input: CreateNotificationRuleInput!) {{ createNotificationRule(input: $input) {{ {RULE_FIELDS} }} }}"),
            json!({ "input": { "name": "Ready by email", "eventType": "order.status_changed",
                "conditions": [{ "field": "to", "op": "EQ", "value": "READY" }],
                "recipient": { "kind": "CUSTOMER" }, "channels": ["EMAIL"],
                "templateName": "order_ready", "category": "ORDERS" } }),
        )
        .await;
    assert!(created["errors"].is_null(), "{created}");

    order_made_ready(&app, &shop).await;
    ready_evaluated(&app, &shop.company_id).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while (evolution
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
        || smtp.received().is_empty())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let requests = evolution.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let body: Value = serde_json::from_slice(&requests[0].body).expect("JSON body");
    assert_eq!(body["number"], "5511987654321", "{body}");
    let whatsapp_text = body["text"].as_str().unwrap_or_default();
    assert!(
        whatsapp_text.contains("Ana") && whatsapp_text.contains("Company rules-path"),
        "{whatsapp_text}"
    );
    assert!(whatsapp_text.contains("45,00"), "{whatsapp_text}");
    let mail = smtp.received();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0].rcpt_to, ["ana@example.com"]);
    assert_eq!(mail[0].mail_from, "pedidos@cantina.example.com");
    let subject = mail[0].header("Subject").unwrap_or_default();
    assert!(!subject.is_empty(), "{:?}", mail[0].data);
    // The rule's unsubscribe link is the email's one-click List-Unsubscribe too.
    let unsubscribe = mail[0].header("List-Unsubscribe").unwrap_or_default();
    assert!(
        unsubscribe.contains("/notifications/unsubscribe?token="),
        "{:?}",
        mail[0].data
    );

    // The provider has both; their attempts are recorded just after.
    let mut sent = notifications_of(&app, &shop.customer).await;
    while sent.iter().any(|row| row.status == "QUEUED") && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        sent = notifications_of(&app, &shop.customer).await;
    }
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|row| row.status == "SENT"), "{sent:?}");
}

const RECORD_CONSENT: &str = "mutation R($input: RecordCustomerConsentInput!) {
    recordCustomerConsent(input: $input) { id source recordedBy } }";

/// Calls `recordCustomerConsent` to marketing on WhatsApp with `source`; returns the response.
async fn record_consent(app: &TestApp, token: &str, customer: &str, source: &str) -> Value {
    app.graphql_as(
        token,
        RECORD_CONSENT,
        json!({ "input": { "customerId": customer, "purpose": "MARKETING", "channel": "WHATSAPP",
                "source": source, "textVersion": "2026-11" } }),
    )
    .await
}

#[tokio::test]
async fn a_consents_source_longer_than_its_column_is_refused() {
    let app = spawn_app().await;
    let shop = restaurant(&app, "consent-source").await;

    let refused = record_consent(&app, &shop.token, &shop.customer, &"W".repeat(33)).await;
    assert_eq!(first_error_code(&refused), "VALIDATION", "{refused}");
    assert_eq!(
        refused["errors"][0]["extensions"]["field"], "input.source",
        "{refused}"
    );
    let longest = "W".repeat(32);
    let recorded = record_consent(&app, &shop.token, &shop.customer, &longest).await;
    assert_eq!(
        recorded["data"]["recordCustomerConsent"]["source"],
        longest.as_str(),
        "{recorded}"
    );
}

/// Writes of one person's choice at once: each succeeds (none trips the unique index), one
/// row stays; consents recorded at once leave one active.
#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn concurrent_preference_and_consent_writes_all_succeed_and_leave_one_row() {
    crate::helpers::require_postgres();
    let app = spawn_app().await;
    let shop = restaurant(&app, "prefs-race").await;

    let writes = (0..8).map(|attempt| {
        app.graphql_as(
            &shop.token,
            "mutation S($optedIn: Boolean!) { setMyNotificationPreference(category: ORDERS,
                channel: EMAIL, optedIn: $optedIn) { optedIn } }",
            json!({ "optedIn": attempt % 2 == 0 }),
        )
    });
    for answer in futures_util::future::join_all(writes).await {
        assert!(answer["errors"].is_null(), "{answer}");
    }
    let rows = notification_preference::Entity::find()
        .filter(notification_preference::Column::Category.eq("orders"))
        .filter(notification_preference::Column::Channel.eq("EMAIL"))
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(rows, 1);

    let consents = (0..6).map(|_| record_consent(&app, &shop.token, &shop.customer, "COUNTER"));
    for answer in futures_util::future::join_all(consents).await {
        assert!(answer["errors"].is_null(), "{answer}");
    }
    let active = entity::notification_consent::Entity::find()
        .filter(entity::notification_consent::Column::SubjectId.eq(uuid(&shop.customer)))
        .filter(entity::notification_consent::Column::RevokedAt.is_null())
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(active, 1);
}

/// Consent is the customer's statement, taken down by a person: an API key whose role may
/// update customers still cannot record or revoke it; a member's recording names them.
#[tokio::test]
async fn an_api_key_cannot_record_or_revoke_a_customers_consent() {
    let app = spawn_app().await;
    let shop = restaurant(&app, "consent-keys").await;
    let created = app
        .graphql_as(
            &shop.token,
            "mutation { createApiKey(name: \"crm\", role: \"STAFF\") { secret } }",
            json!({}),
        )
        .await;
    let key = text(&created["data"]["createApiKey"]["secret"]);
    // The key may update customers, so only the consent rule stands in its way.
    let preference =
        set_customer_preference(&app, &key, &shop.customer, "ORDERS", "SMS", false).await;
    assert!(preference["errors"].is_null(), "{preference}");

    let by_key = record_consent(&app, &key, &shop.customer, "CRM_IMPORT").await;
    assert_eq!(first_error_code(&by_key), "FORBIDDEN", "{by_key}");
    let by_member = record_consent(&app, &shop.token, &shop.customer, "COUNTER").await;
    let admin = app
        .graphql_as(&shop.token, "{ me { id } }", json!({}))
        .await;
    assert_eq!(
        by_member["data"]["recordCustomerConsent"]["recordedBy"], admin["data"]["me"]["id"],
        "{by_member} {admin}"
    );
    let revoke = "mutation V($customer: ID!) { revokeCustomerConsent(customerId: $customer,
        purpose: MARKETING, channel: WHATSAPP) }";
    let revoked_by_key = app
        .graphql_as(&key, revoke, json!({ "customer": shop.customer }))
        .await;
    assert_eq!(
        first_error_code(&revoked_by_key),
        "FORBIDDEN",
        "{revoked_by_key}"
    );
    let active = entity::notification_consent::Entity::find()
        .filter(entity::notification_consent::Column::SubjectId.eq(uuid(&shop.customer)))
        .filter(entity::notification_consent::Column::RevokedAt.is_null())
        .all(&app.db)
        .await
        .expect("consents");
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].source, "COUNTER");
}

/// An access token opens no unsubscribe link and an unsubscribe link's token is no bearer
/// token, even with one secret configured for both.
#[tokio::test]
async fn access_and_unsubscribe_tokens_are_refused_in_each_others_place() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.unsubscribe_secret = settings.jwt_secret.clone();
    })
    .await;
    let shop = restaurant(&app, "tokens-apart").await;
    let unsubscribe = unsubscribe_token(
        &link_tokens(&app),
        CompanyId::from_row(uuid(&shop.company_id)),
        Subject::Customer(uuid(&shop.customer)),
        Category::Orders,
        Channel::Email,
        Utc::now(),
    );

    for response in [
        app.client
            .get(format!(
                "{}/notifications/unsubscribe?token={}",
                app.address, shop.token
            ))
            .send()
            .await
            .expect("GET"),
        app.client
            .post(format!(
                "{}/notifications/unsubscribe?token={}",
                app.address, shop.token
            ))
            .send()
            .await
            .expect("POST"),
    ] {
        assert_eq!(response.status(), 403);
        let body: Value = response.json().await.expect("json");
        assert_eq!(first_error_code(&body), "FORBIDDEN", "{body}");
    }
    let as_bearer = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&unsubscribe)
        .json(&json!({ "query": "{ me { id } }" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(as_bearer.status(), 401);
    let body: Value = as_bearer.json().await.expect("json");
    assert_eq!(first_error_code(&body), "UNAUTHENTICATED", "{body}");
    assert_eq!(
        notification_preference::Entity::find()
            .count(&app.db)
            .await
            .expect("count"),
        0
    );
}
