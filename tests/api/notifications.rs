//! Notifications end to end: in-app delivery, idempotency, the delivery log, channel
//! configurations and their credentials, and what another company or member cannot reach.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Tenant, TestApp, first_error_code, next_event, serve_router, spawn_app, spawn_app_with,
    spawn_second_instance, subscribe, text,
};

pub const SEND: &str =
    "mutation S($input: SendNotificationInput!) { sendNotification(input: $input) {
    duplicate notification { id status channel } } }";

pub const LOG: &str = "query L($filter: NotificationLogFilter, $first: Int, $after: String) {
    notificationLog(filter: $filter, first: $first, after: $after) {
        edges { cursor node { id channel status category address subject body provider
            providerMessageId lastErrorCode lastError attemptCount
            attempts { attempt provider providerMessageId outcome errorCode errorMessage } } }
        pageInfo { hasNextPage endCursor } } }";

const MINE: &str = "query M($unreadOnly: Boolean, $first: Int, $after: String) {
    myNotifications(unreadOnly: $unreadOnly, first: $first, after: $after) {
        edges { node { id category subject body readAt status } } pageInfo { hasNextPage endCursor } } }";

const MARK: &str =
    "mutation R($input: MarkNotificationsReadInput!) { markNotificationsRead(input: $input) }";

pub const CONFIGURE: &str = "mutation C($input: ConfigureNotificationChannelInput!) {
    configureNotificationChannel(input: $input) { id channel provider settings hasCredentials enabled } }";

/// Sends an in-app notification to `user_id` as `token`; returns the mutation's payload.
async fn send_in_app(app: &TestApp, token: &str, user_id: &str, body: &str, key: &str) -> Value {
    let sent = app
        .graphql_as(
            token,
            SEND,
            json!({ "input": { "channel": "IN_APP", "category": "ORDERS",
                "recipient": { "userId": user_id }, "subject": "Order ready",
                "body": body, "idempotencyKey": key } }),
        )
        .await;
    assert!(sent["errors"].is_null(), "{sent}");
    sent["data"]["sendNotification"].clone()
}

/// Polls the log as `token` until the notification `id` leaves `QUEUED`.
pub async fn settled(app: &TestApp, token: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let log = app.graphql_as(token, LOG, json!({ "first": 100 })).await;
        let edges = log["data"]["notificationLog"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{log}"))
            .clone();
        let node = edges
            .into_iter()
            .map(|edge| edge["node"].clone())
            .find(|node| node["id"] == id)
            .unwrap_or_else(|| panic!("notification {id} is not in the log: {log}"));
        if node["status"] != "QUEUED" {
            return node;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "notification {id} is still queued: {node}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn member_of(app: &TestApp, shop: &Tenant, slug: &str, name: &str) -> (String, String) {
    let email = format!("{name}@{slug}.test");
    let user_id = app.invite(&shop.access_token, &email, &["STAFF"]).await;
    let token = app.login(&email, Some(slug)).await;
    (user_id, token)
}

#[tokio::test]
async fn an_in_app_notification_reaches_its_member_alone() {
    let app = spawn_app().await;
    let shop = app.sign_up("inbox", "RESTAURANT").await;
    let (ana, ana_token) = member_of(&app, &shop, "inbox", "ana").await;
    let (_, bruno_token) = member_of(&app, &shop, "inbox", "bruno").await;
    let push = "subscription { notifications { notificationId userId kind message details } }";
    let mut anas_stream = subscribe(&app, &ana_token, push, json!({})).await;
    let mut brunos_stream = subscribe(&app, &bruno_token, push, json!({})).await;
    let mut brunos_events = subscribe(
        &app,
        &bruno_token,
        "subscription { events { type aggregateId } }",
        json!({}),
    )
    .await;

    let sent = send_in_app(
        &app,
        &shop.access_token,
        &ana,
        "Table 4 is ready",
        "ready-4",
    )
    .await;
    assert_eq!(sent["duplicate"], false, "{sent}");
    let id = text(&sent["notification"]["id"]);
    let settled = settled(&app, &shop.access_token, &id).await;
    assert_eq!(settled["status"], "SENT", "{settled}");
    assert_eq!(settled["attempts"][0]["outcome"], "SENT", "{settled}");

    let pushed = next_event(&mut anas_stream, Duration::from_secs(5)).await;
    assert_eq!(
        pushed,
        Some(
            json!({ "notifications": { "notificationId": id, "userId": ana, "kind": "orders",
            "message": "Table 4 is ready", "details": { "subject": "Order ready" } } })
        ),
    );
    assert_eq!(
        next_event(&mut brunos_stream, Duration::from_millis(300)).await,
        None,
        "another member's notification reached Bruno"
    );
    // Bruno holds `events:read`; the company's stream still keeps Ana's notification from him
    // (the `notification.sent` log event is the company's and does reach him).
    let seen = next_event(&mut brunos_events, Duration::from_secs(2)).await;
    assert_eq!(
        seen,
        Some(json!({ "events": { "type": "notification.sent", "aggregateId": id } })),
        "Bruno's events subscription"
    );
    for token in [&bruno_token, &ana_token] {
        let listed = app
            .graphql_as(
                token,
                "{ events(first: 100) { edges { node { type aggregateId } } } }",
                json!({}),
            )
            .await;
        let created: Vec<&Value> = listed["data"]["events"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{listed}"))
            .iter()
            .filter(|edge| edge["node"]["type"] == "notification.created")
            .collect();
        let expected = usize::from(token == &ana_token);
        assert_eq!(created.len(), expected, "notification.created for {listed}");
    }

    let mine = app
        .graphql_as(&ana_token, MINE, json!({ "unreadOnly": true }))
        .await;
    assert_eq!(
        mine["data"]["myNotifications"]["edges"],
        json!([{ "node": { "id": id, "category": "orders", "subject": "Order ready",
            "body": "Table 4 is ready", "readAt": null, "status": "SENT" } }]),
        "{mine}"
    );
    let brunos = app.graphql_as(&bruno_token, MINE, json!({})).await;
    assert_eq!(
        brunos["data"]["myNotifications"]["edges"],
        json!([]),
        "{brunos}"
    );

    let by_bruno = app
        .graphql_as(&bruno_token, MARK, json!({ "input": { "ids": [id] } }))
        .await;
    assert_eq!(by_bruno["data"]["markNotificationsRead"], 0, "{by_bruno}");
    let by_ana = app
        .graphql_as(&ana_token, MARK, json!({ "input": { "ids": [id] } }))
        .await;
    assert_eq!(by_ana["data"]["markNotificationsRead"], 1, "{by_ana}");
    let unread = app
        .graphql_as(&ana_token, MINE, json!({ "unreadOnly": true }))
        .await;
    assert_eq!(
        unread["data"]["myNotifications"]["edges"],
        json!([]),
        "{unread}"
    );
    let all = app.graphql_as(&ana_token, MINE, json!({})).await;
    assert!(
        all["data"]["myNotifications"]["edges"][0]["node"]["readAt"].is_string(),
        "{all}"
    );
    // Bruno reads the company's log (`notifications:read`), but not Ana's in-app notification;
    // Ana sees hers there.
    let log = app.graphql_as(&bruno_token, LOG, json!({})).await;
    assert_eq!(log["data"]["notificationLog"]["edges"], json!([]), "{log}");
    let log = app.graphql_as(&ana_token, LOG, json!({})).await;
    assert_eq!(
        log["data"]["notificationLog"]["edges"][0]["node"]["id"], id,
        "{log}"
    );
}

#[tokio::test]
async fn the_inbox_pages_and_marks_everything_read() {
    let app = spawn_app().await;
    let shop = app.sign_up("pages", "RESTAURANT").await;
    let (ana, ana_token) = member_of(&app, &shop, "pages", "ana").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let sent = send_in_app(
            &app,
            &shop.access_token,
            &ana,
            &format!("note {n}"),
            &format!("note-{n}"),
        )
        .await;
        ids.push(text(&sent["notification"]["id"]));
    }
    for id in &ids {
        settled(&app, &shop.access_token, id).await;
    }
    let first = app
        .graphql_as(&ana_token, MINE, json!({ "first": 2 }))
        .await;
    let page = &first["data"]["myNotifications"];
    let bodies: Vec<&Value> = page["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{first}"))
        .iter()
        .map(|edge| &edge["node"]["body"])
        .collect();
    assert_eq!(bodies, [&json!("note 2"), &json!("note 1")], "{first}");
    assert_eq!(page["pageInfo"]["hasNextPage"], true, "{first}");
    let rest = app
        .graphql_as(
            &ana_token,
            MINE,
            json!({ "first": 2, "after": page["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(
        rest["data"]["myNotifications"]["edges"][0]["node"]["body"], "note 0",
        "{rest}"
    );
    assert_eq!(
        rest["data"]["myNotifications"]["pageInfo"]["hasNextPage"],
        false
    );
    let marked = app
        .graphql_as(&ana_token, MARK, json!({ "input": { "all": true } }))
        .await;
    assert_eq!(marked["data"]["markNotificationsRead"], 3, "{marked}");
    let again = app
        .graphql_as(&ana_token, MARK, json!({ "input": { "all": true } }))
        .await;
    assert_eq!(again["data"]["markNotificationsRead"], 0, "{again}");
    let neither = app
        .graphql_as(&ana_token, MARK, json!({ "input": {} }))
        .await;
    assert_eq!(first_error_code(&neither), "VALIDATION", "{neither}");
}

#[tokio::test]
async fn marking_read_changes_only_the_callers_own_notifications_and_logs_them_read() {
    let app = spawn_app().await;
    let shop = app.sign_up("marks", "RESTAURANT").await;
    let (ana, ana_token) = member_of(&app, &shop, "marks", "ana").await;
    let (bia, bia_token) = member_of(&app, &shop, "marks", "bia").await;
    let anas = text(
        &send_in_app(&app, &shop.access_token, &ana, "for Ana", "ana-1").await["notification"]["id"],
    );
    let bias = text(
        &send_in_app(&app, &shop.access_token, &bia, "for Bia", "bia-1").await["notification"]["id"],
    );
    // Not in-app: no member's inbox holds it.
    let sms = app
        .graphql_as(
            &shop.access_token,
            SEND,
            json!({ "input": { "channel": "SMS", "category": "ORDERS",
                "recipient": { "phone": "+5584999990000" }, "body": "Pronto!",
                "idempotencyKey": "sms-1" } }),
        )
        .await;
    let sms = text(&sms["data"]["sendNotification"]["notification"]["id"]);
    for id in [&anas, &bias, &sms] {
        settled(&app, &shop.access_token, id).await;
    }

    let marked = app
        .graphql_as(
            &ana_token,
            MARK,
            json!({ "input": { "ids": [anas, bias, sms] } }),
        )
        .await;
    assert_eq!(marked["data"]["markNotificationsRead"], 1, "{marked}");

    let hers = settled(&app, &ana_token, &anas).await;
    assert_eq!(hers["status"], "READ", "{hers}");
    let mine = app.graphql_as(&ana_token, MINE, json!({})).await;
    assert_eq!(
        mine["data"]["myNotifications"]["edges"][0]["node"]["status"], "READ",
        "{mine}"
    );
    let theirs = app
        .graphql_as(&bia_token, MINE, json!({ "unreadOnly": true }))
        .await;
    assert_eq!(
        theirs["data"]["myNotifications"]["edges"],
        json!([{ "node": { "id": bias, "category": "orders", "subject": "Order ready",
            "body": "for Bia", "readAt": null, "status": "SENT" } }]),
        "{theirs}"
    );
    let log = app
        .graphql_as(&shop.access_token, LOG, json!({ "first": 100 }))
        .await;
    let sms_now = log["data"]["notificationLog"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{log}"))
        .iter()
        .map(|edge| &edge["node"])
        .find(|node| node["id"] == sms.as_str())
        .unwrap_or_else(|| panic!("{log}"))
        .clone();
    assert_eq!(sms_now["status"], "FAILED", "{sms_now}");

    let empty = app
        .graphql_as(&ana_token, MARK, json!({ "input": { "ids": [] } }))
        .await;
    assert_eq!(first_error_code(&empty), "VALIDATION", "{empty}");
    assert_eq!(
        empty["errors"][0]["extensions"]["field"], "input.ids",
        "{empty}"
    );
}

#[tokio::test]
async fn a_category_outside_the_catalogue_is_refused_and_nothing_is_queued() {
    let app = spawn_app().await;
    let shop = app.sign_up("categories", "RESTAURANT").await;
    let (ana, _) = member_of(&app, &shop, "categories", "ana").await;
    for category in ["promo", "orders", ""] {
        let refused = app
            .graphql_as(
                &shop.access_token,
                SEND,
                json!({ "input": { "channel": "IN_APP", "category": category,
                    "recipient": { "userId": ana }, "body": "Hi",
                    "idempotencyKey": format!("category-{category}") } }),
            )
            .await;
        assert!(refused["data"].is_null(), "{category}: {refused}");
        assert!(
            text(&refused["errors"][0]["message"]).contains("NotificationCategory"),
            "{category}: {refused}"
        );
    }
    let log = app.graphql_as(&shop.access_token, LOG, json!({})).await;
    assert_eq!(log["data"]["notificationLog"]["edges"], json!([]), "{log}");
    let sent = send_in_app(&app, &shop.access_token, &ana, "Hi", "category-ok").await;
    assert_eq!(sent["notification"]["status"], "QUEUED", "{sent}");
}

#[tokio::test]
async fn send_notification_refuses_a_template_locale_or_priority_its_job_could_not_use() {
    let app = spawn_app().await;
    let shop = app.sign_up("refusals", "RESTAURANT").await;
    let (ana, _) = member_of(&app, &shop, "refusals", "ana").await;
    let input = |changes: Value| {
        let mut input = json!({ "channel": "IN_APP", "category": "ORDERS",
            "recipient": { "userId": ana }, "template": "order_ready",
            "idempotencyKey": changes.to_string() });
        for (field, value) in changes.as_object().expect("an object") {
            input[field] = value.clone();
        }
        json!({ "input": input })
    };
    for (changes, field) in [
        (json!({ "template": "no_such_purpose" }), "input.template"),
        (json!({ "locale": "fr-FR" }), "input.locale"),
        (json!({ "priority": 11 }), "input.priority"),
        (json!({ "priority": -11 }), "input.priority"),
    ] {
        let refused = app
            .graphql_as(&shop.access_token, SEND, input(changes.clone()))
            .await;
        assert_eq!(
            first_error_code(&refused),
            "VALIDATION",
            "{changes}: {refused}"
        );
        assert_eq!(
            refused["errors"][0]["extensions"]["field"], field,
            "{changes}: {refused}"
        );
    }
    let log = app.graphql_as(&shop.access_token, LOG, json!({})).await;
    assert_eq!(log["data"]["notificationLog"]["edges"], json!([]), "{log}");

    let accepted = app
        .graphql_as(
            &shop.access_token,
            SEND,
            input(json!({ "locale": "en-US", "priority": 10,
                "variables": { "order": { "number": 7 }, "customer": { "name": "Ana" } } })),
        )
        .await;
    assert!(accepted["errors"].is_null(), "{accepted}");
    let id = text(&accepted["data"]["sendNotification"]["notification"]["id"]);
    let sent = settled(&app, &shop.access_token, &id).await;
    assert_eq!(sent["status"], "SENT", "{sent}");
}

#[tokio::test]
async fn a_duplicate_idempotency_key_returns_the_first_notification() {
    let app = spawn_app().await;
    let shop = app.sign_up("twice", "RESTAURANT").await;
    let (ana, ana_token) = member_of(&app, &shop, "twice", "ana").await;
    let first = send_in_app(&app, &shop.access_token, &ana, "once", "event-1:rule-1").await;
    let second = send_in_app(&app, &shop.access_token, &ana, "twice?", "event-1:rule-1").await;
    assert_eq!(second["duplicate"], true, "{second}");
    assert_eq!(second["notification"]["id"], first["notification"]["id"]);
    settled(
        &app,
        &shop.access_token,
        &text(&first["notification"]["id"]),
    )
    .await;
    let mine = app.graphql_as(&ana_token, MINE, json!({})).await;
    let edges = mine["data"]["myNotifications"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{mine}"));
    assert_eq!(edges.len(), 1, "{mine}");
    assert_eq!(edges[0]["node"]["body"], "once");
}

#[tokio::test]
async fn an_unconfigured_channel_fails_at_once_with_the_reason_in_the_log() {
    let app = spawn_app().await;
    let shop = app.sign_up("silent", "RESTAURANT").await;
    let sent = app
        .graphql_as(
            &shop.access_token,
            SEND,
            json!({ "input": { "channel": "WHATSAPP", "category": "ORDERS",
                "recipient": { "phone": "+5584999990000" }, "body": "Pronto!",
                "idempotencyKey": "k1" } }),
        )
        .await;
    let id = text(&sent["data"]["sendNotification"]["notification"]["id"]);
    let failed = settled(&app, &shop.access_token, &id).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(
        failed["lastErrorCode"], "CHANNEL_NOT_CONFIGURED",
        "{failed}"
    );
    assert_eq!(
        failed["attempts"].as_array().map(Vec::len),
        Some(1),
        "{failed}"
    );
    assert_eq!(failed["attempts"][0]["outcome"], "PERMANENT", "{failed}");

    let wrong = app
        .graphql_as(
            &shop.access_token,
            SEND,
            json!({ "input": { "channel": "EMAIL", "category": "ORDERS",
                "recipient": { "phone": "+5584999990000" }, "body": "Pronto!",
                "idempotencyKey": "k2" } }),
        )
        .await;
    assert_eq!(first_error_code(&wrong), "VALIDATION", "{wrong}");
    assert_eq!(
        wrong["errors"][0]["extensions"]["field"], "input.recipient",
        "{wrong}"
    );
}

/// The `notifications.send` job (there is one in these tests).
async fn send_job(app: &TestApp) -> entity::job::Model {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    entity::job::Entity::find()
        .filter(entity::job::Column::Queue.eq("notifications.send"))
        .one(&app.db)
        .await
        .expect("reads the jobs")
        .expect("the notifications.send job")
}

/// Makes every write of a delivery attempt fail, as a database refusing writes would: the
/// send job's handler fails after the hand-over, on every attempt.
async fn refuse_attempt_writes(app: &TestApp) {
    use sea_orm::{ConnectionTrait, DatabaseBackend};
    let refused = match app.db.get_database_backend() {
        DatabaseBackend::Sqlite => {
            app.db
                .execute_unprepared(
                    "CREATE TRIGGER refuse_attempts BEFORE INSERT ON notification_attempts
                     BEGIN SELECT RAISE(ABORT, 'attempts refused'); END",
                )
                .await
        }
        _ => {
            app.owner_db()
                .await
                .execute_unprepared(
                    "CREATE FUNCTION refuse_attempts() RETURNS trigger LANGUAGE plpgsql
                         AS $$ BEGIN RAISE EXCEPTION 'attempts refused'; END $$;
                     CREATE TRIGGER refuse_attempts BEFORE INSERT ON notification_attempts
                         FOR EACH ROW EXECUTE FUNCTION refuse_attempts();",
                )
                .await
        }
    };
    refused.expect("installs the trigger");
}

#[tokio::test]
async fn a_handler_failing_on_the_last_attempt_fails_the_notification_with_its_event() {
    let clock = api::jobs::ManualClock::starting_at(chrono::Utc::now());
    let app = crate::helpers::spawn_app_on(std::sync::Arc::new(clock.clone()), |settings| {
        let once = whatsapp::quick_retries(1);
        settings.notifications.email_retry = once;
        settings.notifications.whatsapp_retry = once;
        settings.notifications.sms_retry = once;
    })
    .await;
    let shop = app.sign_up("brokendb", "RESTAURANT").await;
    let (ana, _) = member_of(&app, &shop, "brokendb", "ana").await;
    refuse_attempt_writes(&app).await;
    let sent = send_in_app(&app, &shop.access_token, &ana, "Pronto!", "broken-1").await;
    let id = text(&sent["notification"]["id"]);

    // The handler's failures wait on the queue's backoff (seconds, then minutes): move the
    // clock past each wait once the attempt has failed, until the job has no attempt left.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let job = loop {
        let job = send_job(&app).await;
        if job.status == "DEAD" {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "{job:?}");
        if job.status == "QUEUED" && job.attempts > 0 {
            clock.advance(chrono::Duration::hours(2));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // One attempt for the channel schedules' longest (1) and the queue's spares.
    assert_eq!(job.attempts, 4, "{job:?}");
    assert!(
        job.last_error
            .as_deref()
            .is_some_and(|error| error.contains("attempts refused")),
        "{job:?}"
    );
    let failed = settled(&app, &shop.access_token, &id).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(failed["lastErrorCode"], "INTERNAL", "{failed}");
    assert!(
        !text(&failed["lastError"]).contains("attempts refused"),
        "the cause stays in the server's log: {failed}"
    );
    let events = app
        .graphql_as(
            &shop.access_token,
            "{ events(types: [\"notification.failed\"]) { edges { node { payload } } } }",
            json!({}),
        )
        .await;
    let edges = events["data"]["events"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{events}"));
    assert_eq!(edges.len(), 1, "{events}");
    let payload = &edges[0]["node"]["payload"];
    assert_eq!(payload["notificationId"], id, "{events}");
    assert_eq!(payload["status"], "FAILED", "{events}");
    assert_eq!(payload["errorCode"], "INTERNAL", "{events}");
}

#[tokio::test]
async fn credentials_are_stored_sealed_and_never_returned() {
    let app = spawn_app().await;
    let shop = app.sign_up("sealed", "RESTAURANT").await;
    let configured = app
        .graphql_as(
            &shop.access_token,
            CONFIGURE,
            json!({ "input": { "channel": "WHATSAPP", "provider": "EVOLUTION",
                "settings": { "baseUrl": "http://127.0.0.1:9", "instance": "loja" },
                "credentials": { "apiKey": "evo-secret-key-123" } } }),
        )
        .await;
    let saved = &configured["data"]["configureNotificationChannel"];
    assert_eq!(saved["hasCredentials"], true, "{configured}");
    assert_eq!(
        saved["settings"],
        json!({ "baseUrl": "http://127.0.0.1:9", "instance": "loja" })
    );
    let listed = app
        .graphql_as(
            &shop.access_token,
            "{ notificationChannels { channel provider settings hasCredentials } }",
            json!({}),
        )
        .await;
    assert!(
        !listed.to_string().contains("evo-secret-key-123"),
        "{listed}"
    );
    let schema = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("the committed schema");
    let configuration = schema
        .split("type NotificationChannelConfiguration {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("the configuration type");
    assert!(
        !configuration
            .lines()
            .any(|line| line.trim().starts_with("credentials")),
        "{configuration}"
    );
    use sea_orm::EntityTrait;
    let rows = entity::notification_channel::Entity::find()
        .all(&app.db)
        .await
        .expect("reads");
    assert_eq!(rows.len(), 1);
    let sealed = rows[0]
        .credentials_ciphertext
        .as_deref()
        .unwrap_or_default();
    assert!(
        !sealed.is_empty() && !sealed.contains("evo-secret"),
        "{sealed}"
    );

    let mismatched = app
        .graphql_as(
            &shop.access_token,
            CONFIGURE,
            json!({ "input": { "channel": "SMS", "provider": "EVOLUTION", "settings": {} } }),
        )
        .await;
    assert_eq!(first_error_code(&mismatched), "VALIDATION", "{mismatched}");
    assert_eq!(
        mismatched["errors"][0]["extensions"]["field"],
        "input.provider"
    );
    let bad_url = app
        .graphql_as(
            &shop.access_token,
            CONFIGURE,
            json!({ "input": { "channel": "WHATSAPP", "provider": "EVOLUTION",
                "settings": { "baseUrl": "ftp://nope" } } }),
        )
        .await;
    assert_eq!(
        bad_url["errors"][0]["extensions"]["field"], "input.settings.baseUrl",
        "{bad_url}"
    );
}

#[tokio::test]
async fn another_company_reaches_none_of_its_notifications_or_channels() {
    let app = spawn_app().await;
    let a = app.sign_up("alpha", "RESTAURANT").await;
    let b = app.sign_up("bravo", "RESTAURANT").await;
    app.graphql_as(
        &a.access_token,
        CONFIGURE,
        json!({ "input": { "channel": "WHATSAPP", "provider": "EVOLUTION",
            "settings": { "baseUrl": "http://127.0.0.1:9", "instance": "alpha" },
            "credentials": { "apiKey": "alpha-key" } } }),
    )
    .await;
    let sent = send_in_app(&app, &a.access_token, &a.admin_id, "for alpha", "a-1").await;
    let id = text(&sent["notification"]["id"]);
    settled(&app, &a.access_token, &id).await;

    // B's view of the log, its inbox and its channels holds nothing of A's.
    let log = app.graphql_as(&b.access_token, LOG, json!({})).await;
    assert_eq!(log["data"]["notificationLog"]["edges"], json!([]), "{log}");
    let mine = app.graphql_as(&b.access_token, MINE, json!({})).await;
    assert_eq!(
        mine["data"]["myNotifications"]["edges"],
        json!([]),
        "{mine}"
    );
    let channels = app
        .graphql_as(
            &b.access_token,
            "{ notificationChannels { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        channels["data"]["notificationChannels"],
        json!([]),
        "{channels}"
    );
    // A's ids through B's mutations: marking, sending to A's admin, testing A's channel.
    let marked = app
        .graphql_as(&b.access_token, MARK, json!({ "input": { "ids": [id] } }))
        .await;
    assert_eq!(marked["data"]["markNotificationsRead"], 0, "{marked}");
    let to_a = app
        .graphql_as(
            &b.access_token,
            SEND,
            json!({ "input": { "channel": "IN_APP", "category": "ORDERS",
                "recipient": { "userId": a.admin_id }, "body": "hi", "idempotencyKey": "b-1" } }),
        )
        .await;
    assert_eq!(first_error_code(&to_a), "NOT_FOUND", "{to_a}");
    let tested = app
        .graphql_as(
            &b.access_token,
            "mutation T { testNotificationChannel(channel: WHATSAPP, to: \"+5584999990000\") { accepted } }",
            json!({}),
        )
        .await;
    assert_eq!(first_error_code(&tested), "NOT_FOUND", "{tested}");
    // A's key is B's to use too: idempotency keys are per company.
    let same_key = send_in_app(&app, &b.access_token, &b.admin_id, "for bravo", "a-1").await;
    assert_eq!(same_key["duplicate"], false, "{same_key}");
    // A's notification stays unread, and B's own log shows only B's.
    let a_mine = app
        .graphql_as(&a.access_token, MINE, json!({ "unreadOnly": true }))
        .await;
    assert_eq!(
        a_mine["data"]["myNotifications"]["edges"][0]["node"]["id"], id,
        "{a_mine}"
    );
    let b_log = app.graphql_as(&b.access_token, LOG, json!({})).await;
    let b_ids: Vec<&Value> = b_log["data"]["notificationLog"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{b_log}"))
        .iter()
        .map(|edge| &edge["node"]["id"])
        .collect();
    assert_eq!(b_ids, [&same_key["notification"]["id"]], "{b_log}");
}

mod whatsapp {
    use std::time::Duration;

    use api::configuration::NotificationRetry;
    use serde_json::{Value, json};
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{body_json, header, method, path},
    };

    use super::{CONFIGURE, LOG, SEND, settled};
    use crate::helpers::{Tenant, TestApp, events_of, serve_router, spawn_app_with, text};

    const API_KEY: &str = "evo-key-123";
    const PHONE: &str = "+55 84 99999-0000";

    /// Retries a few milliseconds apart, so a test sees the whole schedule.
    pub fn quick_retries(attempts: u32) -> NotificationRetry {
        NotificationRetry {
            max_attempts: attempts,
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(100),
        }
    }

    pub async fn app_with_quick_retries(attempts: u32) -> TestApp {
        spawn_app_with(|settings| {
            settings.notifications.whatsapp_retry = quick_retries(attempts);
        })
        .await
    }

    pub async fn configure_evolution(app: &TestApp, shop: &Tenant, server: &MockServer) {
        let configured = app
            .graphql_as(
                &shop.access_token,
                CONFIGURE,
                json!({ "input": { "channel": "WHATSAPP", "provider": "EVOLUTION",
                    "settings": { "baseUrl": server.uri(), "instance": "loja" },
                    "credentials": { "apiKey": API_KEY } } }),
            )
            .await;
        assert!(configured["errors"].is_null(), "{configured}");
    }

    fn sent(id: &str) -> ResponseTemplate {
        ResponseTemplate::new(201).set_body_json(json!({
            "key": { "remoteJid": "5584999990000@s.whatsapp.net", "fromMe": true, "id": id },
            "status": "PENDING", "messageType": "conversation"
        }))
    }

    pub async fn send_whatsapp(app: &TestApp, shop: &Tenant, text_body: &str, key: &str) -> String {
        let sent = app
            .graphql_as(
                &shop.access_token,
                SEND,
                json!({ "input": { "channel": "WHATSAPP", "category": "ORDERS",
                    "recipient": { "phone": PHONE }, "body": text_body, "idempotencyKey": key } }),
            )
            .await;
        assert!(sent["errors"].is_null(), "{sent}");
        text(&sent["data"]["sendNotification"]["notification"]["id"])
    }

    fn send_text_to_the_customer(body_text: &str) -> wiremock::MockBuilder {
        Mock::given(method("POST"))
            .and(path("/message/sendText/loja"))
            .and(header("apikey", API_KEY))
            .and(body_json(
                json!({ "number": "5584999990000", "text": body_text }),
            ))
    }

    #[tokio::test]
    async fn a_message_arrives_at_evolution_with_the_number_and_text() {
        let app = app_with_quick_retries(3).await;
        let shop = app.sign_up("evo", "RESTAURANT").await;
        let server = MockServer::start().await;
        send_text_to_the_customer("Seu pedido #7 está pronto")
            .respond_with(sent("BAE5F4F0A1"))
            .expect(1)
            .mount(&server)
            .await;
        configure_evolution(&app, &shop, &server).await;
        let id = send_whatsapp(&app, &shop, "Seu pedido #7 está pronto", "order-7-ready").await;
        let done = settled(&app, &shop.access_token, &id).await;
        assert_eq!(done["status"], "SENT", "{done}");
        assert_eq!(done["provider"], "evolution");
        assert_eq!(done["providerMessageId"], "BAE5F4F0A1");
        assert_eq!(done["address"], "+5584999990000");
        assert_eq!(
            done["attempts"],
            json!([{ "attempt": 1, "provider": "evolution", "providerMessageId": "BAE5F4F0A1",
                "outcome": "SENT", "errorCode": null, "errorMessage": null }])
        );
        // The same key again sends nothing more (the mock expects one request).
        let again = send_whatsapp(&app, &shop, "Seu pedido #7 está pronto", "order-7-ready").await;
        assert_eq!(again, id);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    #[tokio::test]
    async fn a_503_is_retried_and_the_message_sent_once() {
        let app = app_with_quick_retries(3).await;
        let shop = app.sign_up("retry", "RESTAURANT").await;
        let server = MockServer::start().await;
        send_text_to_the_customer("Pronto!")
            .respond_with(ResponseTemplate::new(503).set_body_string("upstream busy"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        send_text_to_the_customer("Pronto!")
            .respond_with(sent("BAE5RETRY"))
            .expect(1)
            .mount(&server)
            .await;
        configure_evolution(&app, &shop, &server).await;
        let id = send_whatsapp(&app, &shop, "Pronto!", "retry-1").await;
        let done = settled(&app, &shop.access_token, &id).await;
        assert_eq!(done["status"], "SENT", "{done}");
        assert_eq!(done["attemptCount"], 2, "{done}");
        let outcomes: Vec<(&Value, &Value)> = done["attempts"]
            .as_array()
            .unwrap_or_else(|| panic!("{done}"))
            .iter()
            .map(|attempt| (&attempt["outcome"], &attempt["errorCode"]))
            .collect();
        assert_eq!(
            outcomes,
            [
                (&json!("RETRYABLE"), &json!("503")),
                (&json!("SENT"), &Value::Null)
            ],
            "{done}"
        );
        assert_eq!(done["lastErrorCode"], Value::Null, "{done}");
    }

    #[tokio::test]
    async fn a_permanent_refusal_fails_at_once_with_the_providers_code() {
        let app = app_with_quick_retries(3).await;
        let shop = app.sign_up("refused", "RESTAURANT").await;
        let server = MockServer::start().await;
        send_text_to_the_customer("Oi")
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "status": 400, "error": "Bad Request",
                "response": { "message": [{ "exists": false, "jid": "5584999990000@s.whatsapp.net",
                    "number": "5584999990000" }] } })))
            .expect(1)
            .mount(&server)
            .await;
        configure_evolution(&app, &shop, &server).await;
        let id = send_whatsapp(&app, &shop, "Oi", "refused-1").await;
        let failed = settled(&app, &shop.access_token, &id).await;
        assert_eq!(failed["status"], "FAILED", "{failed}");
        assert_eq!(failed["lastErrorCode"], "400", "{failed}");
        assert!(
            text(&failed["lastError"]).contains("not on WhatsApp"),
            "{failed}"
        );
        assert_eq!(failed["attempts"].as_array().map(Vec::len), Some(1));
        // A permanent failure is not retried: give a retry the time it would take.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let later = app
            .graphql_as(
                &shop.access_token,
                LOG,
                json!({ "filter": { "status": "FAILED" } }),
            )
            .await;
        assert_eq!(
            later["data"]["notificationLog"]["edges"][0]["node"]["attemptCount"], 1,
            "{later}"
        );
        let events = app
            .graphql_as(
                &shop.access_token,
                "{ events(types: [\"notification.failed\"]) { edges { node { payload } } } }",
                json!({}),
            )
            .await;
        let payload = &events["data"]["events"]["edges"][0]["node"]["payload"];
        assert_eq!(payload["notificationId"], id, "{events}");
        assert_eq!(payload["errorCode"], "400", "{events}");
    }

    /// A provider answering 503 to every one of a channel's `attempts`: the notification fails
    /// after the last with the provider's code, and its job is a dead letter with the reason.
    async fn every_attempt_fails_with_503(attempts: u32, slug: &str) {
        let app = app_with_quick_retries(attempts).await;
        let shop = app.sign_up(slug, "RESTAURANT").await;
        let server = MockServer::start().await;
        send_text_to_the_customer("Oi")
            .respond_with(ResponseTemplate::new(503))
            .expect(u64::from(attempts))
            .mount(&server)
            .await;
        configure_evolution(&app, &shop, &server).await;
        let id = send_whatsapp(&app, &shop, "Oi", &format!("{slug}-1")).await;
        let failed = settled(&app, &shop.access_token, &id).await;
        assert_eq!(failed["status"], "FAILED", "{failed}");
        assert_eq!(failed["attemptCount"], attempts, "{failed}");
        assert_eq!(failed["lastErrorCode"], "503", "{failed}");
        let job = super::send_job(&app).await;
        assert_eq!(job.status, "DEAD", "{job:?}");
        assert!(
            job.last_error
                .as_deref()
                .is_some_and(|error| error.contains("503")),
            "{job:?}"
        );
    }

    #[tokio::test]
    async fn the_last_retryable_failure_is_a_dead_letter_with_its_reason() {
        every_attempt_fails_with_503(3, "dead").await;
    }

    #[tokio::test]
    async fn a_channel_allowing_more_attempts_than_the_queue_default_uses_them_all() {
        // The queue's default policy allowed 8 attempts: the 9th was killed on claim.
        every_attempt_fails_with_503(12, "patient").await;
    }

    /// An Evolution configuration's typing delay and link preview go with every text; options
    /// Evolution could not take are refused when configured.
    #[tokio::test]
    async fn the_configured_typing_delay_and_link_preview_go_with_each_text() {
        let app = app_with_quick_retries(3).await;
        let shop = app.sign_up("typing", "RESTAURANT").await;
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/message/sendText/loja"))
            .and(body_json(json!({ "number": "5584999990000", "text": "Oi",
                "delay": 1200, "linkPreview": false })))
            .respond_with(sent("BAE5TYPING"))
            .expect(1)
            .mount(&server)
            .await;
        let configure = |settings: Value| {
            app.graphql_as(
                &shop.access_token,
                CONFIGURE,
                json!({ "input": { "channel": "WHATSAPP", "provider": "EVOLUTION",
                    "settings": settings, "credentials": { "apiKey": API_KEY } } }),
            )
        };
        for (options, reason) in [
            (json!({ "delayMs": -5 }), "delayMs"),
            (json!({ "delayMs": 5001 }), "delayMs"),
            (json!({ "linkPreview": "no" }), "linkPreview"),
        ] {
            let mut settings = json!({ "baseUrl": server.uri(), "instance": "loja" });
            settings
                .as_object_mut()
                .expect("an object")
                .extend(options.as_object().expect("an object").clone());
            let refused = configure(settings).await;
            assert_eq!(
                refused["errors"][0]["extensions"]["code"], "VALIDATION",
                "{refused}"
            );
            assert_eq!(
                refused["errors"][0]["extensions"]["field"], "input.settings",
                "{refused}"
            );
            assert!(
                text(&refused["errors"][0]["message"]).contains(reason),
                "{refused}"
            );
        }
        let configured = configure(json!({ "baseUrl": server.uri(), "instance": "loja",
            "delayMs": 1200, "linkPreview": false }))
        .await;
        assert!(configured["errors"].is_null(), "{configured}");
        let id = send_whatsapp(&app, &shop, "Oi", "typing-1").await;
        assert_eq!(
            settled(&app, &shop.access_token, &id).await["status"],
            "SENT"
        );
    }

    #[tokio::test]
    async fn a_test_message_reports_the_sessions_state() {
        let app = app_with_quick_retries(3).await;
        let shop = app.sign_up("probe", "RESTAURANT").await;
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/message/sendText/loja"))
            .and(header("apikey", API_KEY))
            .respond_with(sent("BAE5TEST"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/instance/connectionState/loja"))
            .and(header("apikey", API_KEY))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(
                    json!({ "instance": { "instanceName": "loja", "state": "open" } }),
                ),
            )
            .expect(1)
            .mount(&server)
            .await;
        configure_evolution(&app, &shop, &server).await;
        let tested = app
            .graphql_as(
                &shop.access_token,
                "mutation T($to: String!) { testNotificationChannel(channel: WHATSAPP, to: $to) {
                    provider accepted providerMessageId errorCode connectionState } }",
                json!({ "to": PHONE }),
            )
            .await;
        assert_eq!(
            tested["data"]["testNotificationChannel"],
            json!({ "provider": "EVOLUTION", "accepted": true, "providerMessageId": "BAE5TEST",
                "errorCode": null, "connectionState": "OPEN" }),
            "{tested}"
        );
    }

    /// Evolution reports a message delivered and read before it answers the send: the statuses
    /// wait for the send's record and are applied with it — the company's own, never those
    /// another company's verified webhook reported for the same message id.
    #[tokio::test]
    async fn statuses_called_back_before_the_send_answers_are_applied_when_it_is_recorded() {
        use axum::{Json, Router, extract::State, routing::post};

        #[derive(Clone)]
        struct Evolution {
            client: reqwest::Client,
            callback_url: String,
        }
        async fn call_back_then_answer(
            State(evolution): State<Evolution>,
        ) -> (axum::http::StatusCode, Json<Value>) {
            for status in ["DELIVERY_ACK", "READ"] {
                let answer = evolution
                    .client
                    .post(&evolution.callback_url)
                    .header("x-webhook-secret", "evo-hook-secret-0123456789")
                    .json(&json!({ "event": "messages.update", "instance": "loja",
                        "data": { "keyId": "BAE5EARLY", "fromMe": true, "status": status,
                            "remoteJid": "5584999990000@s.whatsapp.net" } }))
                    .send()
                    .await
                    .expect("calls back");
                assert!(answer.status().is_success(), "{}", answer.status());
            }
            (
                axum::http::StatusCode::CREATED,
                Json(
                    json!({ "key": { "remoteJid": "5584999990000@s.whatsapp.net",
                    "fromMe": true, "id": "BAE5EARLY" }, "status": "PENDING" }),
                ),
            )
        }

        let app = app_with_quick_retries(3).await;
        let shop = app.sign_up("early", "RESTAURANT").await;
        let other = app.sign_up("early-other", "RESTAURANT").await;
        for tenant in [&shop, &other] {
            let secret = app
                .graphql_as(
                    &tenant.access_token,
                    "mutation { setWebhookProviderSecret(provider: EVOLUTION, secret: \"evo-hook-secret-0123456789\") }",
                    json!({}),
                )
                .await;
            assert!(secret["errors"].is_null(), "{secret}");
        }
        // Kept under the other company: were it applied here, the message would be FAILED.
        let foreign = app
            .client
            .post(format!(
                "{}/webhooks/in/evolution/{}",
                app.address, other.company_id
            ))
            .header("x-webhook-secret", "evo-hook-secret-0123456789")
            .json(&json!({ "event": "messages.update", "instance": "loja",
                "data": { "keyId": "BAE5EARLY", "fromMe": true, "status": "ERROR",
                    "remoteJid": "5584999990000@s.whatsapp.net" } }))
            .send()
            .await
            .expect("calls back");
        assert!(foreign.status().is_success(), "{}", foreign.status());
        let base_url = serve_router(
            Router::new()
                .route("/message/sendText/{instance}", post(call_back_then_answer))
                .with_state(Evolution {
                    client: app.client.clone(),
                    callback_url: format!(
                        "{}/webhooks/in/evolution/{}",
                        app.address, shop.company_id
                    ),
                }),
        )
        .await;
        let configured = app
            .graphql_as(
                &shop.access_token,
                CONFIGURE,
                json!({ "input": { "channel": "WHATSAPP", "provider": "EVOLUTION",
                    "settings": { "baseUrl": base_url, "instance": "loja" },
                    "credentials": { "apiKey": API_KEY } } }),
            )
            .await;
        assert!(configured["errors"].is_null(), "{configured}");

        let id = send_whatsapp(&app, &shop, "Oi", "early-1").await;
        let done = settled(&app, &shop.access_token, &id).await;
        assert_eq!(done["status"], "READ", "{done}");
        assert_eq!(done["providerMessageId"], "BAE5EARLY", "{done}");
        let events = events_of(
            &app,
            &shop.access_token,
            &["notification.sent", "notification.delivered"],
            2,
        )
        .await;
        let mut kinds: Vec<String> = events.iter().map(|event| text(&event["type"])).collect();
        kinds.sort();
        assert_eq!(
            kinds,
            ["notification.delivered", "notification.sent"],
            "sent once, delivered once: {events:?}"
        );
    }

    #[tokio::test]
    async fn status_callbacks_move_a_message_to_delivered_then_read_once() {
        let app = app_with_quick_retries(3).await;
        let shop = app.sign_up("ticks", "RESTAURANT").await;
        let other = app.sign_up("other", "RESTAURANT").await;
        let server = MockServer::start().await;
        send_text_to_the_customer("Oi")
            .respond_with(sent("BAE5TICKS"))
            .mount(&server)
            .await;
        configure_evolution(&app, &shop, &server).await;
        for tenant in [&shop, &other] {
            let secret = app
                .graphql_as(
                    &tenant.access_token,
                    "mutation { setWebhookProviderSecret(provider: EVOLUTION, secret: \"evo-hook-secret-0123456789\") }",
                    json!({}),
                )
                .await;
            assert!(secret["errors"].is_null(), "{secret}");
        }
        let id = send_whatsapp(&app, &shop, "Oi", "ticks-1").await;
        assert_eq!(
            settled(&app, &shop.access_token, &id).await["status"],
            "SENT"
        );
        let callback = |company: &str, status: &str| {
            let url = format!("{}/webhooks/in/evolution/{company}", app.address);
            let body = json!({ "event": "messages.update", "instance": "loja",
                "data": { "keyId": "BAE5TICKS", "fromMe": true, "status": status,
                    "remoteJid": "5584999990000@s.whatsapp.net" } });
            app.client
                .post(url)
                .header("x-webhook-secret", "evo-hook-secret-0123456789")
                .json(&body)
                .send()
        };
        let status_of = || async {
            let log = app.graphql_as(&shop.access_token, LOG, json!({})).await;
            log["data"]["notificationLog"]["edges"][0]["node"]["status"].clone()
        };
        // Another company's verified callback naming the same message id moves nothing.
        let foreign = callback(&other.company_id, "DELIVERY_ACK")
            .await
            .expect("sends");
        assert!(foreign.status().is_success(), "{}", foreign.status());
        assert_eq!(status_of().await, "SENT");

        for (status, expected) in [
            ("DELIVERY_ACK", "DELIVERED"),
            ("READ", "READ"),
            ("READ", "READ"),
            ("DELIVERY_ACK", "READ"),
        ] {
            let answer = callback(&shop.company_id, status).await.expect("sends");
            assert!(
                answer.status().is_success(),
                "{status}: {}",
                answer.status()
            );
            assert_eq!(status_of().await, expected, "after {status}");
        }
        let unsigned = app
            .client
            .post(format!("{}/webhooks/in/evolution/{}", app.address, shop.company_id))
            .json(&json!({ "event": "messages.update", "data": { "keyId": "BAE5TICKS", "fromMe": true, "status": "ERROR" } }))
            .send()
            .await
            .expect("sends");
        assert!(unsigned.status().is_client_error(), "{}", unsigned.status());
        assert_eq!(status_of().await, "READ");

        let delivered = events_of(&app, &shop.access_token, &["notification.delivered"], 1).await;
        assert_eq!(delivered.len(), 1, "delivered once: {delivered:?}");
        assert_eq!(
            delivered[0]["payload"]["notificationId"], id,
            "{delivered:?}"
        );
        assert_eq!(
            delivered[0]["payload"]["status"], "DELIVERED",
            "{delivered:?}"
        );
    }
}

#[tokio::test]
async fn a_notification_from_a_template_is_rendered_when_sent() {
    let app = spawn_app().await;
    let shop = app.sign_up("written", "RESTAURANT").await;
    let (ana, ana_token) = member_of(&app, &shop, "written", "ana").await;
    let send = |template: &str, key: &str, variables: Value| {
        app.graphql_as(
            &shop.access_token,
            SEND,
            json!({ "input": { "channel": "IN_APP", "category": "ORDERS",
                "recipient": { "userId": ana }, "template": template, "variables": variables,
                "locale": "pt-BR", "idempotencyKey": key } }),
        )
    };
    let sent = send(
        "order_ready",
        "t-1",
        json!({ "order": { "number": 7 }, "customer": { "name": "Ana" } }),
    )
    .await;
    let id = text(&sent["data"]["sendNotification"]["notification"]["id"]);
    assert_eq!(
        settled(&app, &shop.access_token, &id).await["status"],
        "SENT"
    );
    let mine = app.graphql_as(&ana_token, MINE, json!({})).await;
    let node = &mine["data"]["myNotifications"]["edges"][0]["node"];
    assert_eq!(node["subject"], "Pedido 7 pronto", "{mine}");
    assert_eq!(node["body"], "O pedido 7 de Ana está pronto.", "{mine}");

    // A template no job could find is refused at once rather than failing in the job.
    let unknown = send("no_such_template", "t-2", json!({})).await;
    assert_eq!(first_error_code(&unknown), "VALIDATION", "{unknown}");
    assert_eq!(
        unknown["errors"][0]["extensions"]["field"], "input.template",
        "{unknown}"
    );
    let missing = send("order_ready", "t-3", json!({ "order": { "number": 8 } })).await;
    let id = text(&missing["data"]["sendNotification"]["notification"]["id"]);
    let failed = settled(&app, &shop.access_token, &id).await;
    assert_eq!(failed["lastErrorCode"], "TEMPLATE_FAILED", "{failed}");
}

/// Two instances on one PostgreSQL database share the sends: every notification goes out
/// once, whichever instance queued it and whichever runs its job.
#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn two_instances_send_each_notification_exactly_once() {
    use std::collections::HashMap;

    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

    crate::helpers::require_postgres();
    let first = whatsapp::app_with_quick_retries(3).await;
    let second = crate::helpers::spawn_second_instance(&first).await;
    let shop = first.sign_up("pair", "RESTAURANT").await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "key": { "remoteJid": "5584999990000@s.whatsapp.net", "fromMe": true, "id": "BAE5PAIR" }
        })))
        .expect(40)
        .mount(&server)
        .await;
    whatsapp::configure_evolution(&first, &shop, &server).await;
    let mut ids = Vec::new();
    for n in 0..40 {
        let app = if n % 2 == 0 { &first } else { &second };
        ids.push(
            whatsapp::send_whatsapp(app, &shop, &format!("message {n}"), &format!("pair-{n}"))
                .await,
        );
    }
    for id in &ids {
        assert_eq!(
            settled(&first, &shop.access_token, id).await["status"],
            "SENT"
        );
    }
    let mut texts: HashMap<String, usize> = HashMap::new();
    for request in server.received_requests().await.unwrap_or_default() {
        let body: Value = serde_json::from_slice(&request.body).expect("JSON");
        *texts.entry(text(&body["text"])).or_default() += 1;
    }
    assert_eq!(texts.len(), 40, "{texts:?}");
    assert!(texts.values().all(|count| *count == 1), "{texts:?}");
    second.stop();
}

/// SMS through Twilio's Messages API with this server's callback URL on its public address, and
/// the signed status callback Twilio sends there marking it delivered.
#[tokio::test]
async fn an_sms_goes_through_twilio_and_its_status_callback_marks_it_delivered() {
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{body_string_contains, header_exists, method, path},
    };

    const PUBLIC_URL: &str = "https://api.platform.test";
    let app = spawn_app_with(|settings| settings.public_url = Some(format!("{PUBLIC_URL}/"))).await;
    let shop = app.sign_up("sms", "RESTAURANT").await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .and(header_exists("authorization"))
        .and(body_string_contains("To=%2B5584999990000"))
        .and(body_string_contains("Body=Pronto%21"))
        .and(body_string_contains(format!(
            "StatusCallback=https%3A%2F%2Fapi.platform.test%2Fwebhooks%2Fin%2Ftwilio%2F{}",
            shop.company_id
        )))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM42", "status": "queued", "to": "+5584999990000", "from": "+15005550006"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let configured = app
        .graphql_as(
            &shop.access_token,
            CONFIGURE,
            json!({ "input": { "channel": "SMS", "provider": "TWILIO",
                "settings": { "baseUrl": server.uri(), "accountSid": "AC123", "from": "+15005550006" },
                "credentials": { "authToken": "twilio-auth-token" } } }),
        )
        .await;
    assert!(configured["errors"].is_null(), "{configured}");
    let secret = app
        .graphql_as(
            &shop.access_token,
            "mutation { setWebhookProviderSecret(provider: TWILIO, secret: \"twilio-auth-token\") }",
            json!({}),
        )
        .await;
    assert!(secret["errors"].is_null(), "{secret}");
    let sent = app
        .graphql_as(
            &shop.access_token,
            SEND,
            json!({ "input": { "channel": "SMS", "category": "ORDERS",
                "recipient": { "phone": "+55 84 99999-0000" }, "body": "Pronto!",
                "idempotencyKey": "sms-1" } }),
        )
        .await;
    let id = text(&sent["data"]["sendNotification"]["notification"]["id"]);
    let done = settled(&app, &shop.access_token, &id).await;
    assert_eq!(done["status"], "SENT", "{done}");
    assert_eq!(done["providerMessageId"], "SM42", "{done}");

    // Twilio signs the URL it called: the public one, whatever address the request reached.
    let signed_url = format!("{PUBLIC_URL}/webhooks/in/twilio/{}", shop.company_id);
    let url = format!("{}/webhooks/in/twilio/{}", app.address, shop.company_id);
    let params: Vec<(String, String)> = [
        ("MessageSid", "SM42"),
        ("MessageStatus", "delivered"),
        ("AccountSid", "AC123"),
        ("To", "+5584999990000"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    let signature =
        api::webhooks::signature::twilio_signature("twilio-auth-token", &signed_url, &params);
    for _ in 0..2 {
        let answer = app
            .client
            .post(&url)
            .header("x-twilio-signature", &signature)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("MessageSid=SM42&MessageStatus=delivered&AccountSid=AC123&To=%2B5584999990000")
            .send()
            .await
            .expect("sends");
        assert!(answer.status().is_success(), "{}", answer.status());
    }
    let log = app.graphql_as(&shop.access_token, LOG, json!({})).await;
    assert_eq!(
        log["data"]["notificationLog"]["edges"][0]["node"]["status"], "DELIVERED",
        "{log}"
    );
}

/// An email notification from a template goes through the company's SMTP server: the message
/// arrives with its sender, recipient, subject and both parts, rendered in the asked locale.
#[tokio::test]
async fn an_email_from_a_template_arrives_at_the_companys_smtp_server() {
    let listener = crate::smtp::SmtpListener::start().await;
    let app = spawn_app().await;
    let shop = app.sign_up("mailed", "BIKE_SHOP").await;
    let configured = app
        .graphql_as(
            &shop.access_token,
            CONFIGURE,
            json!({ "input": { "channel": "EMAIL", "provider": "SMTP",
                "settings": { "fromName": "Aro 29", "fromAddress": "oficina@aro29.example.com" },
                "credentials": { "url": listener.url() } } }),
        )
        .await;
    assert!(configured["errors"].is_null(), "{configured}");
    let sent = app
        .graphql_as(
            &shop.access_token,
            SEND,
            json!({ "input": { "channel": "EMAIL", "category": "ORDERS",
                "recipient": { "email": "maria@example.org" }, "template": "order_ready",
                "locale": "en-US", "idempotencyKey": "mail-1",
                "variables": { "order": { "number": 42, "total": { "minor": 12990, "currency": "BRL" } },
                    "customer": { "name": "Maria <3" },
                    "notification": { "unsubscribe_url": "https://app.example.com/u/1" } } } }),
        )
        .await;
    assert!(sent["errors"].is_null(), "{sent}");
    let id = text(&sent["data"]["sendNotification"]["notification"]["id"]);
    let done = settled(&app, &shop.access_token, &id).await;
    assert_eq!(done["status"], "SENT", "{done}");
    assert_eq!(done["provider"], "smtp", "{done}");

    let received = listener.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let message = &received[0];
    assert_eq!(message.mail_from, "oficina@aro29.example.com");
    assert_eq!(message.rcpt_to, ["maria@example.org"]);
    assert_eq!(
        message.header("Subject").as_deref(),
        Some("Your order 42 is ready")
    );
    assert_eq!(
        message.header("Message-ID").as_deref(),
        done["providerMessageId"].as_str()
    );
    let from = message.header("From").unwrap_or_default();
    assert!(from.contains("oficina@aro29.example.com"), "{from}");
    let data = message.data.replace("=\r\n", "");
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(
        data.contains("text/plain") && data.contains("text/html"),
        "{data}"
    );
    // The customer's name is escaped in the HTML part, the company's name filled in.
    assert!(
        data.contains("Maria &lt;3") || data.contains("Maria =26lt;3"),
        "{data}"
    );
    assert!(
        data.contains("Aro 29") || data.contains("Aro=2029"),
        "{data}"
    );
}

/// `kill -9` with notifications still queued: the server started again on the same database
/// sends every one of them, each once.
#[tokio::test]
async fn notifications_queued_when_the_server_is_killed_are_sent_after_it_restarts() {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

    use crate::lifecycle::{platform, serve_with};

    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({ "key": { "remoteJid": "5511987654321@s.whatsapp.net", "fromMe": true, "id": "BAEKILL" } }),
        ))
        .mount(&provider)
        .await;
    let data = tempfile::tempdir().expect("temp dir");
    let start = || {
        let mut command = platform();
        command
            .env("PLATFORM_DATA_DIR", data.path())
            // The provider is a local server.
            .env("PLATFORM_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8");
        serve_with(command)
    };
    let client = reqwest::Client::new();
    let call = |port: u16, token: Option<String>, query: &'static str, variables: Value| {
        let client = client.clone();
        async move {
            let mut request = client
                .post(format!("http://127.0.0.1:{port}/graphql"))
                .json(&json!({ "query": query, "variables": variables }));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let body: Value = request
                .send()
                .await
                .expect("answers")
                .json()
                .await
                .expect("JSON");
            assert!(body["errors"].is_null(), "{body}");
            body["data"].clone()
        }
    };

    let (mut server, port) = start();
    let signed_up = call(port, None,
        "mutation S($input: SignUpInput!) { signUp(input: $input) { accessToken } }",
        json!({ "input": { "companyName": "Killed", "companySlug": "killed", "businessType": "RESTAURANT",
            "name": "Owner", "email": "owner@killed.test", "password": "correct horse battery staple" } })).await;
    let token = text(&signed_up["signUp"]["accessToken"]);
    call(
        port,
        Some(token.clone()),
        "mutation C($input: ConfigureNotificationChannelInput!) { configureNotificationChannel(input: $input) { id } }",
        json!({ "input": { "channel": "WHATSAPP", "provider": "EVOLUTION",
            "settings": { "baseUrl": provider.uri(), "instance": "killed" },
            "credentials": { "apiKey": "killed-key" } } }),
    )
    .await;
    for n in 0..20 {
        call(
            port,
            Some(token.clone()),
            "mutation N($input: SendNotificationInput!) { sendNotification(input: $input) { duplicate } }",
            json!({ "input": { "channel": "WHATSAPP", "category": "ORDERS",
                "recipient": { "phone": "+5511987654321" }, "body": format!("queued {n}"),
                "idempotencyKey": format!("queued-{n}"), "delaySeconds": 5 } }),
        )
        .await;
    }
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
    assert!(
        provider
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "nothing was due before the kill"
    );

    let (mut restarted, _) = start();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut texts = Vec::new();
    while tokio::time::Instant::now() < deadline {
        texts = provider
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|request| {
                let body: Value = serde_json::from_slice(&request.body).expect("JSON body");
                text(&body["text"])
            })
            .collect();
        if texts.len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    restarted.kill().ok();
    texts.sort();
    let mut expected: Vec<String> = (0..20).map(|n| format!("queued {n}")).collect();
    expected.sort();
    assert_eq!(texts, expected);
}

/// A WhatsApp Cloud API configuration that maps a purpose to a template Meta approved sends a
/// template message with the variables as its body parameters; an unmapped purpose goes as
/// text.
#[tokio::test]
async fn a_cloud_api_configuration_sends_its_approved_template_with_the_variables() {
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{header, method, path},
    };

    let cloud = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v21.0/1099/messages"))
        .and(header("authorization", "Bearer cloud-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": "5511987654321", "wa_id": "5511987654321" }],
            "messages": [{ "id": "wamid.CLOUD1" }] })))
        .mount(&cloud)
        .await;
    let app = spawn_app().await;
    let shop = app.sign_up("cloudy", "RESTAURANT").await;
    let configured = app
        .graphql_as(
            &shop.access_token,
            CONFIGURE,
            json!({ "input": { "channel": "WHATSAPP", "provider": "WHATSAPP_CLOUD",
                "settings": { "baseUrl": cloud.uri(), "version": "v21.0", "phoneNumberId": "1099",
                    "templates": { "order_ready": { "name": "pedido_pronto", "language": "pt_BR",
                        "parameters": ["customer.name", "order.number", "order.total"] } } },
                "credentials": { "accessToken": "cloud-token" } } }),
        )
        .await;
    assert!(configured["errors"].is_null(), "{configured}");
    let send = |input: Value| app.graphql_as(&shop.access_token, SEND, json!({ "input": input }));
    let variables = json!({ "order": { "number": 7, "total": { "minor": 4500, "currency": "BRL" } },
        "customer": { "name": "Ana" } });
    for input in [
        json!({ "channel": "WHATSAPP", "category": "ORDERS", "recipient": { "phone": "+5511987654321" },
            "template": "order_ready", "variables": variables, "idempotencyKey": "cloud-1" }),
        json!({ "channel": "WHATSAPP", "category": "ORDERS", "recipient": { "phone": "+5511987654321" },
            "body": "Obrigado pela visita", "idempotencyKey": "cloud-2" }),
    ] {
        let sent = send(input).await;
        assert!(sent["errors"].is_null(), "{sent}");
        let id = text(&sent["data"]["sendNotification"]["notification"]["id"]);
        let done = settled(&app, &shop.access_token, &id).await;
        assert_eq!(done["status"], "SENT", "{done}");
        assert_eq!(done["providerMessageId"], "wamid.CLOUD1", "{done}");
    }

    let bodies: Vec<Value> = cloud
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|request| serde_json::from_slice(&request.body).expect("JSON body"))
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let template = &bodies[0]["template"];
    assert_eq!(bodies[0]["type"], "template", "{bodies:?}");
    assert_eq!(template["name"], "pedido_pronto");
    assert_eq!(template["language"]["code"], "pt_BR");
    let parameters: Vec<String> = template["components"][0]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|parameter| text(&parameter["text"]))
        .collect();
    assert_eq!(parameters[..2], ["Ana".to_string(), "7".to_string()]);
    assert!(parameters[2].contains("45,00"), "{parameters:?}");
    assert_eq!(bodies[1]["type"], "text", "{bodies:?}");
    assert_eq!(bodies[1]["text"]["body"], "Obrigado pela visita");
}

/// A provider's base URL or SMTP server at an internal address (the cloud metadata endpoint,
/// loopback, a name resolving to loopback) is refused when it is configured, unless the
/// operator allowed that network; the refusal does not say what the address is.
#[tokio::test]
async fn a_provider_at_an_internal_address_is_refused_when_configured() {
    let app = spawn_app_with(|settings| settings.webhooks.allowed_networks.clear()).await;
    let shop = app.sign_up("inward", "RESTAURANT").await;
    let provider = wiremock::MockServer::start().await;
    let port = provider.address().port();
    let configure =
        |input: Value| app.graphql_as(&shop.access_token, CONFIGURE, json!({ "input": input }));

    for base_url in [
        "http://169.254.169.254".to_string(),
        "http://[::ffff:169.254.169.254]/latest".to_string(),
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        "http://10.0.0.8:8080".to_string(),
    ] {
        let refused = configure(json!({ "channel": "WHATSAPP", "provider": "EVOLUTION",
            "settings": { "baseUrl": base_url, "instance": "loja" },
            "credentials": { "apiKey": "k" } }))
        .await;
        assert_eq!(
            first_error_code(&refused),
            "VALIDATION",
            "{base_url}: {refused}"
        );
        let extensions = &refused["errors"][0]["extensions"];
        assert_eq!(extensions["field"], "input.settings.baseUrl", "{refused}");
        let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("not allowed"), "{message}");
        for revealing in ["127.0.0.1", "169.254", "loopback", "metadata", "private"] {
            assert!(
                !message.contains(revealing),
                "{message} reveals {revealing}"
            );
        }
    }
    let smtp = configure(json!({ "channel": "EMAIL", "provider": "SMTP",
        "settings": { "fromAddress": "loja@inward.example.com" },
        "credentials": { "url": format!("smtp://127.0.0.1:{port}?tls=none") } }))
    .await;
    assert_eq!(first_error_code(&smtp), "VALIDATION", "{smtp}");
    assert_eq!(
        smtp["errors"][0]["extensions"]["field"], "input.credentials.url",
        "{smtp}"
    );

    let channels = app
        .graphql_as(
            &shop.access_token,
            "{ notificationChannels { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        channels["data"]["notificationChannels"],
        json!([]),
        "{channels}"
    );
    assert!(
        provider
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

/// A configuration saved while its host was allowed (or resolved elsewhere) is checked again
/// at each send: a name that now resolves to loopback is never connected to, and the
/// notification fails for good with the reason in the delivery log.
#[tokio::test]
async fn a_provider_whose_name_resolves_to_an_internal_address_is_refused_at_send() {
    let mut app = spawn_app_with(|settings| {
        settings.webhooks.allowed_networks = vec!["127.0.0.0/8".into(), "::1/128".into()];
    })
    .await;
    let shop = app.sign_up("rebound", "RESTAURANT").await;
    let provider = wiremock::MockServer::start().await;
    let configured = app
        .graphql_as(
            &shop.access_token,
            CONFIGURE,
            json!({ "input": { "channel": "WHATSAPP", "provider": "EVOLUTION",
                "settings": { "baseUrl": format!("http://localhost:{}", provider.address().port()),
                    "instance": "loja" },
                "credentials": { "apiKey": "k" } } }),
        )
        .await;
    assert!(configured["errors"].is_null(), "{configured}");
    app.stop();
    app.settings.webhooks.allowed_networks.clear();
    let guarded = spawn_second_instance(&app).await;

    let sent = guarded
        .graphql_as(
            &shop.access_token,
            SEND,
            json!({ "input": { "channel": "WHATSAPP", "category": "ORDERS",
                "recipient": { "phone": "+5584999990000" }, "body": "Pronto!",
                "idempotencyKey": "rebound-1" } }),
        )
        .await;
    let id = text(&sent["data"]["sendNotification"]["notification"]["id"]);
    let failed = settled(&guarded, &shop.access_token, &id).await;

    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(failed["lastErrorCode"], "ADDRESS_NOT_ALLOWED", "{failed}");
    assert_eq!(failed["attempts"][0]["outcome"], "PERMANENT", "{failed}");
    assert!(
        provider
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

/// One WhatsApp configuration is given at most `whatsapp_concurrency` messages at once by an
/// instance, however many are queued: a provider holding each message a while sees that many
/// requests in flight, never more.
#[tokio::test]
async fn a_whatsapp_configuration_is_given_its_concurrency_of_messages_at_once() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use axum::{Json, Router, extract::State, routing::post};

    #[derive(Clone, Default)]
    struct InFlight {
        now: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        received: Arc<AtomicUsize>,
    }
    async fn hold(State(flight): State<InFlight>) -> (axum::http::StatusCode, Json<Value>) {
        let now = flight.now.fetch_add(1, Ordering::SeqCst) + 1;
        flight.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        flight.now.fetch_sub(1, Ordering::SeqCst);
        let n = flight.received.fetch_add(1, Ordering::SeqCst);
        (
            axum::http::StatusCode::CREATED,
            Json(
                json!({ "key": { "remoteJid": "5584999990000@s.whatsapp.net", "fromMe": true,
                "id": format!("BAE5HOLD{n}") } }),
            ),
        )
    }

    let app = spawn_app_with(|settings| settings.notifications.whatsapp_concurrency = 3).await;
    let shop = app.sign_up("held", "RESTAURANT").await;
    let flight = InFlight::default();
    let base_url = serve_router(
        Router::new()
            .route("/message/sendText/{instance}", post(hold))
            .with_state(flight.clone()),
    )
    .await;
    let configured = app
        .graphql_as(
            &shop.access_token,
            CONFIGURE,
            json!({ "input": { "channel": "WHATSAPP", "provider": "EVOLUTION",
                "settings": { "baseUrl": base_url, "instance": "held" },
                "credentials": { "apiKey": "held-key" } } }),
        )
        .await;
    assert!(configured["errors"].is_null(), "{configured}");

    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(
            whatsapp::send_whatsapp(&app, &shop, &format!("held {n}"), &format!("held-{n}")).await,
        );
    }
    for id in &ids {
        assert_eq!(
            settled(&app, &shop.access_token, id).await["status"],
            "SENT"
        );
    }
    assert_eq!(flight.received.load(Ordering::SeqCst), 12);
    assert_eq!(
        flight.most.load(Ordering::SeqCst),
        3,
        "the most in flight at once"
    );
}
