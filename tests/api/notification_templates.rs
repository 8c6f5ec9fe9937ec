//! Notification templates: a company writes its own wording, a bad template is refused at save
//! with its line, previews render company templates and system defaults, only members with the
//! permission read or change them, and one company reaches nothing of another's.

use api::{
    db::tenant::{CompanyId, Intent},
    domain::Locale,
    notifications::Channel,
    services::notifications::templates::render_for,
    state::AppState,
};
use entity::company;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{TestApp, first_error_code, spawn_app, text};

const FIELDS: &str = "id name channel locale subject body system cursor createdAt updatedAt";

fn create_query() -> String {
    format!(
        "mutation C($input: CreateNotificationTemplateInput!) {{
            createNotificationTemplate(input: $input) {{ {FIELDS} }} }}"
    )
}

fn update_query() -> String {
    format!(
        "mutation U($id: ID!, $input: UpdateNotificationTemplateInput!) {{
            updateNotificationTemplate(id: $id, input: $input) {{ {FIELDS} }} }}"
    )
}

const DELETE: &str = "mutation D($id: ID!) { deleteNotificationTemplate(id: $id) }";
const LIST: &str = "query L($channel: NotificationChannel, $name: String, $first: Int, $after: String) {
    notificationTemplates(channel: $channel, name: $name, first: $first, after: $after) {
        edges { cursor node { id name channel locale body } } pageInfo { hasNextPage hasPreviousPage endCursor } } }";
const ONE: &str = "query O($id: ID!) { notificationTemplate(id: $id) { id name body system } }";
const PREVIEW: &str = "query P($id: ID!, $sample: JSON) {
    previewTemplate(id: $id, sample: $sample) { subject text html } }";
const DEFAULTS: &str = "query D($channel: NotificationChannel, $name: String) {
    notificationTemplateDefaults(channel: $channel, name: $name) { id name channel locale system body } }";
const PURPOSES: &str = "{ notificationPurposes { name variables { path kind sample } } }";

const WHATSAPP_BODY: &str =
    "Oi {{ customer.name }}!\nPedido {{ order.number }} pronto: {{ order.total | money }}";

async fn create(app: &TestApp, token: &str, input: Value) -> Value {
    app.graphql_as(token, &create_query(), json!({ "input": input }))
        .await
}

/// Creates the WhatsApp pt-BR `order_ready` template; returns its id.
async fn create_whatsapp(app: &TestApp, token: &str) -> String {
    let body = create(
        app,
        token,
        json!({ "name": "order_ready", "channel": "WHATSAPP", "locale": "pt-BR", "body": WHATSAPP_BODY }),
    )
    .await;
    let id = &body["data"]["createNotificationTemplate"]["id"];
    assert!(id.is_string(), "createNotificationTemplate failed: {body}");
    text(id)
}

fn listed_ids(body: &Value) -> Vec<String> {
    body["data"]["notificationTemplates"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("notificationTemplates: {body}"))
        .iter()
        .map(|edge| text(&edge["node"]["id"]))
        .collect()
}

fn error_extensions(body: &Value) -> &Value {
    &body["errors"][0]["extensions"]
}

#[tokio::test]
async fn a_company_creates_lists_pages_updates_and_deletes_its_templates() {
    let app = spawn_app().await;
    let shop = app.sign_up("tpl-crud", "BIKE_SHOP").await;
    let token = &shop.access_token;

    let whatsapp = create_whatsapp(&app, token).await;
    let email = create(
        &app,
        token,
        json!({ "name": "order_ready", "channel": "EMAIL", "locale": "en-US",
                "subject": "Order {{ order.number }}", "body": "<p>Hi {{ customer.name }}</p>" }),
    )
    .await;
    let email_id = text(&email["data"]["createNotificationTemplate"]["id"]);
    let sms = create(
        &app,
        token,
        json!({ "name": "quote_sent", "channel": "SMS", "locale": "pt-BR",
                "body": "Orçamento {{ quote.number }}: {{ quote.total | money }}" }),
    )
    .await;
    let sms_id = text(&sms["data"]["createNotificationTemplate"]["id"]);
    let created = &email["data"]["createNotificationTemplate"];
    assert_eq!(created["name"], "order_ready");
    assert_eq!(created["channel"], "EMAIL");
    assert_eq!(created["locale"], "en-US");
    assert_eq!(created["subject"], "Order {{ order.number }}");
    assert_eq!(created["system"], false);

    let all = app.graphql_as(token, LIST, json!({})).await;
    assert_eq!(
        listed_ids(&all),
        [whatsapp.as_str(), email_id.as_str(), sms_id.as_str()],
        "{all}"
    );
    let first_page = app.graphql_as(token, LIST, json!({ "first": 2 })).await;
    assert_eq!(
        listed_ids(&first_page),
        [whatsapp.as_str(), email_id.as_str()]
    );
    let page_info = &first_page["data"]["notificationTemplates"]["pageInfo"];
    assert_eq!(page_info["hasNextPage"], true);
    let second_page = app
        .graphql_as(
            token,
            LIST,
            json!({ "first": 2, "after": page_info["endCursor"] }),
        )
        .await;
    assert_eq!(listed_ids(&second_page), [sms_id.as_str()]);
    assert_eq!(
        second_page["data"]["notificationTemplates"]["pageInfo"]["hasNextPage"],
        false
    );
    let by_channel = app
        .graphql_as(token, LIST, json!({ "channel": "SMS" }))
        .await;
    assert_eq!(listed_ids(&by_channel), [sms_id.as_str()]);
    let by_name = app
        .graphql_as(token, LIST, json!({ "name": "order_ready" }))
        .await;
    assert_eq!(listed_ids(&by_name), [whatsapp.as_str(), email_id.as_str()]);

    let duplicate = create(
        &app,
        token,
        json!({ "name": "order_ready", "channel": "WHATSAPP", "locale": "pt-BR", "body": "Oi" }),
    )
    .await;
    assert_eq!(first_error_code(&duplicate), "CONFLICT", "{duplicate}");

    let updated = app
        .graphql_as(
            token,
            &update_query(),
            json!({ "id": whatsapp, "input": { "body": "Pronto, {{ customer.name }}!" } }),
        )
        .await;
    let updated = &updated["data"]["updateNotificationTemplate"];
    assert_eq!(updated["body"], "Pronto, {{ customer.name }}!", "{updated}");
    assert_eq!(updated["channel"], "WHATSAPP");
    let cleared = app
        .graphql_as(
            token,
            &update_query(),
            json!({ "id": email_id, "input": { "subject": "" } }),
        )
        .await;
    assert_eq!(
        error_extensions(&cleared)["field"],
        "input.subject",
        "an email keeps its subject: {cleared}"
    );

    let deleted = app
        .graphql_as(token, DELETE, json!({ "id": whatsapp }))
        .await;
    assert_eq!(
        deleted["data"]["deleteNotificationTemplate"], true,
        "{deleted}"
    );
    let again = app
        .graphql_as(token, DELETE, json!({ "id": whatsapp }))
        .await;
    assert_eq!(first_error_code(&again), "NOT_FOUND");
    let remaining = app.graphql_as(token, LIST, json!({})).await;
    assert_eq!(listed_ids(&remaining), [email_id.as_str(), sms_id.as_str()]);
}

#[tokio::test]
async fn a_bad_template_is_refused_at_save_with_its_field_and_line() {
    let app = spawn_app().await;
    let shop = app.sign_up("tpl-bad", "RESTAURANT").await;
    let token = &shop.access_token;
    let id = create_whatsapp(&app, token).await;

    let cases = [
        (
            json!({ "name": "order_ready", "channel": "SMS", "locale": "pt-BR",
                    "body": "Oi {{ customer.name }}\nSeu CPF {{ customer.document }}" }),
            "input.body",
            Some(2),
            "customer.document",
        ),
        (
            json!({ "name": "order_ready", "channel": "SMS", "locale": "pt-BR",
                    "body": "Oi\n{% if order.status %}\n{{ order.number }" }),
            "input.body",
            Some(3),
            "syntax error",
        ),
        (
            json!({ "name": "order_ready", "channel": "EMAIL", "locale": "pt-BR",
                    "subject": "Pedido {{ order.numero }}", "body": "<p>ok</p>" }),
            "input.subject",
            Some(1),
            "order.numero",
        ),
        (
            json!({ "name": "order_ready", "channel": "EMAIL", "locale": "pt-BR", "body": "<p>ok</p>" }),
            "input.subject",
            None,
            "needs a subject",
        ),
        (
            json!({ "name": "order_ready", "channel": "SMS", "locale": "pt-BR",
                    "body": "{% for i in range(100000) %}{{ i }}{% endfor %}" }),
            "input.body",
            Some(1),
            "unknown variable `range`",
        ),
        (
            json!({ "name": "order_ready", "channel": "SMS", "locale": "pt-BR",
                    "body": "Oi {{ customer.name }}\n{% set x = customer.name * 100000000 %}{{ x }}" }),
            "input.body",
            Some(2),
            "`{% set %}` statement is not available",
        ),
        (
            json!({ "name": "no_such_purpose", "channel": "SMS", "locale": "pt-BR", "body": "Oi" }),
            "input.name",
            None,
            "order_ready",
        ),
        (
            json!({ "name": "order_ready", "channel": "SMS", "locale": "fr-FR", "body": "Oi" }),
            "input.locale",
            None,
            "pt-BR",
        ),
    ];
    for (input, field, line, mentions) in cases {
        let body = create(&app, token, input.clone()).await;
        assert_eq!(first_error_code(&body), "VALIDATION", "{input}: {body}");
        let extensions = error_extensions(&body);
        assert_eq!(extensions["field"], field, "{input}: {body}");
        assert_eq!(
            extensions["line"].as_u64(),
            line.map(|line: u64| line),
            "{input}: {body}"
        );
        let message = text(&body["errors"][0]["message"]);
        assert!(message.contains(mentions), "{input}: {message}");
    }

    let bad_update = app
        .graphql_as(
            token,
            &update_query(),
            json!({ "id": id, "input": { "body": "ok\n\n{{ payment.amount | money }}" } }),
        )
        .await;
    assert_eq!(first_error_code(&bad_update), "VALIDATION", "{bad_update}");
    assert_eq!(error_extensions(&bad_update)["line"], 3);
    let unchanged = app.graphql_as(token, ONE, json!({ "id": id })).await;
    assert_eq!(
        unchanged["data"]["notificationTemplate"]["body"],
        WHATSAPP_BODY
    );
    let listed = app.graphql_as(token, LIST, json!({})).await;
    assert_eq!(
        listed_ids(&listed),
        [id.as_str()],
        "nothing refused was saved: {listed}"
    );
}

#[tokio::test]
async fn previews_render_company_templates_and_system_defaults_with_sample_data() {
    let app = spawn_app().await;
    let shop = app.sign_up("tpl-preview", "BIKE_SHOP").await;
    let token = &shop.access_token;
    let id = create_whatsapp(&app, token).await;

    let with_defaults = app.graphql_as(token, PREVIEW, json!({ "id": id })).await;
    assert_eq!(
        with_defaults["data"]["previewTemplate"],
        json!({ "subject": null, "html": null,
                "text": "Oi Maria Souza!\nPedido 1042 pronto: R$ 159,90" }),
        "{with_defaults}"
    );
    let with_sample = app
        .graphql_as(
            token,
            PREVIEW,
            json!({ "id": id, "sample": { "customer": { "name": "João" },
                    "order": { "total": { "minor": 1500, "currency": "JPY" } } } }),
        )
        .await;
    assert_eq!(
        with_sample["data"]["previewTemplate"]["text"], "Oi João!\nPedido 1042 pronto: ¥ 1.500",
        "{with_sample}"
    );

    let system = app
        .graphql_as(
            token,
            PREVIEW,
            json!({ "id": "system:order_ready:EMAIL:en-US",
                    "sample": { "customer": { "name": "<b>Ann</b>" } } }),
        )
        .await;
    let preview = &system["data"]["previewTemplate"];
    assert_eq!(preview["subject"], "Your order 1042 is ready", "{system}");
    let html = text(&preview["html"]);
    assert!(html.contains("Hi &lt;b&gt;Ann&lt;&#x2f;b&gt;,"), "{html}");
    assert!(html.contains("R$159.90"), "{html}");
    assert!(
        text(&preview["text"]).starts_with("Hi <b>Ann</b>,"),
        "{system}"
    );

    let failing = app
        .graphql_as(
            token,
            PREVIEW,
            json!({ "id": id, "sample": { "order": { "total": "a lot" } } }),
        )
        .await;
    assert_eq!(first_error_code(&failing), "VALIDATION", "{failing}");
    assert_eq!(error_extensions(&failing)["field"], "sample");
    assert_eq!(error_extensions(&failing)["line"], 2);
    let not_an_object = app
        .graphql_as(token, PREVIEW, json!({ "id": id, "sample": [1] }))
        .await;
    assert_eq!(first_error_code(&not_an_object), "VALIDATION");
    for unknown in [
        "system:order_ready:FAX:pt-BR",
        "system:nothing:SMS:pt-BR",
        "nonsense",
    ] {
        let body = app
            .graphql_as(token, PREVIEW, json!({ "id": unknown }))
            .await;
        assert_eq!(first_error_code(&body), "VALIDATION", "{unknown}: {body}");
    }

    let defaults = app
        .graphql_as(
            token,
            DEFAULTS,
            json!({ "name": "order_ready", "channel": "SMS" }),
        )
        .await;
    let defaults = defaults["data"]["notificationTemplateDefaults"]
        .as_array()
        .unwrap_or_else(|| panic!("defaults: {defaults}"))
        .clone();
    let ids: Vec<String> = defaults.iter().map(|row| text(&row["id"])).collect();
    assert_eq!(
        ids,
        [
            "system:order_ready:SMS:pt-BR",
            "system:order_ready:SMS:en-US",
            "system:order_ready:SMS:es-ES"
        ]
    );
    assert!(defaults.iter().all(|row| row["system"] == true));
    let one_default = app
        .graphql_as(token, ONE, json!({ "id": "system:order_ready:SMS:en-US" }))
        .await;
    assert_eq!(one_default["data"]["notificationTemplate"]["system"], true);

    let purposes = app.graphql_as(token, PURPOSES, json!({})).await;
    let order_ready = purposes["data"]["notificationPurposes"]
        .as_array()
        .unwrap_or_else(|| panic!("purposes: {purposes}"))
        .iter()
        .find(|purpose| purpose["name"] == "order_ready")
        .cloned()
        .expect("order_ready is a purpose");
    assert!(
        order_ready["variables"]
            .as_array()
            .expect("variables")
            .contains(&json!({ "path": "order.total", "kind": "MONEY", "sample": "15990 BRL" })),
        "{order_ready}"
    );
}

#[tokio::test]
async fn only_members_with_the_permission_read_or_change_templates() {
    let app = spawn_app().await;
    let shop = app.sign_up("tpl-perm", "RESTAURANT").await;
    let id = create_whatsapp(&app, &shop.access_token).await;
    app.invite(&shop.access_token, "staff@tpl-perm.test", &["STAFF"])
        .await;
    app.invite(&shop.access_token, "cook@tpl-perm.test", &["KITCHEN"])
        .await;
    let staff = app.login("staff@tpl-perm.test", None).await;
    let cook = app.login("cook@tpl-perm.test", None).await;
    let new = json!({ "name": "order_ready", "channel": "SMS", "locale": "pt-BR", "body": "Oi" });

    let cook_lists = app.graphql_as(&cook, LIST, json!({})).await;
    let cook_previews = app.graphql_as(&cook, PREVIEW, json!({ "id": id })).await;
    let cook_defaults = app.graphql_as(&cook, DEFAULTS, json!({})).await;
    let cook_reads = app.graphql_as(&cook, ONE, json!({ "id": id })).await;
    for refused in [&cook_lists, &cook_previews, &cook_defaults, &cook_reads] {
        assert_eq!(first_error_code(refused), "FORBIDDEN", "{refused}");
    }

    let staff_lists = app.graphql_as(&staff, LIST, json!({})).await;
    assert_eq!(listed_ids(&staff_lists), [id.as_str()]);
    let staff_previews = app.graphql_as(&staff, PREVIEW, json!({ "id": id })).await;
    assert!(
        staff_previews["data"]["previewTemplate"]["text"].is_string(),
        "{staff_previews}"
    );
    let staff_creates = create(&app, &staff, new.clone()).await;
    let staff_updates = app
        .graphql_as(
            &staff,
            &update_query(),
            json!({ "id": id, "input": { "body": "Oi" } }),
        )
        .await;
    let staff_deletes = app.graphql_as(&staff, DELETE, json!({ "id": id })).await;
    for refused in [&staff_creates, &staff_updates, &staff_deletes] {
        assert_eq!(first_error_code(refused), "FORBIDDEN", "{refused}");
    }
    let unchanged = app
        .graphql_as(&shop.access_token, ONE, json!({ "id": id }))
        .await;
    assert_eq!(
        unchanged["data"]["notificationTemplate"]["body"],
        WHATSAPP_BODY
    );
}

#[tokio::test]
async fn one_company_reaches_nothing_of_anothers_templates() {
    let app = spawn_app().await;
    let a = app.sign_up("tpl-a", "RESTAURANT").await;
    let b = app.sign_up("tpl-b", "RESTAURANT").await;
    let a_template = create_whatsapp(&app, &a.access_token).await;
    let unknown = uuid::Uuid::new_v4().to_string();

    let b_lists = app.graphql_as(&b.access_token, LIST, json!({})).await;
    let b_reads = app
        .graphql_as(&b.access_token, ONE, json!({ "id": a_template }))
        .await;
    let b_previews = app
        .graphql_as(&b.access_token, PREVIEW, json!({ "id": a_template }))
        .await;
    let b_previews_unknown = app
        .graphql_as(&b.access_token, PREVIEW, json!({ "id": unknown }))
        .await;
    let b_updates = app
        .graphql_as(
            &b.access_token,
            &update_query(),
            json!({ "id": a_template, "input": { "body": "B was here" } }),
        )
        .await;
    let b_updates_unknown = app
        .graphql_as(
            &b.access_token,
            &update_query(),
            json!({ "id": unknown, "input": { "body": "B was here" } }),
        )
        .await;
    let b_deletes = app
        .graphql_as(&b.access_token, DELETE, json!({ "id": a_template }))
        .await;
    // B may create the same purpose, channel and locale: uniqueness is per company.
    let b_own = create_whatsapp(&app, &b.access_token).await;

    assert_eq!(listed_ids(&b_lists), Vec::<String>::new(), "{b_lists}");
    assert_eq!(
        b_reads["data"]["notificationTemplate"],
        Value::Null,
        "{b_reads}"
    );
    for (refused, unknown) in [
        (&b_previews, &b_previews_unknown),
        (&b_updates, &b_updates_unknown),
        (&b_deletes, &b_updates_unknown),
    ] {
        assert_eq!(first_error_code(refused), "NOT_FOUND", "{refused}");
        assert_eq!(
            refused["errors"][0]["message"],
            unknown["errors"][0]["message"]
        );
    }
    let a_lists = app.graphql_as(&a.access_token, LIST, json!({})).await;
    assert_eq!(listed_ids(&a_lists), [a_template.as_str()]);
    let a_reads = app
        .graphql_as(&a.access_token, ONE, json!({ "id": a_template }))
        .await;
    assert_eq!(
        a_reads["data"]["notificationTemplate"]["body"],
        WHATSAPP_BODY
    );
    let b_lists_own = app.graphql_as(&b.access_token, LIST, json!({})).await;
    assert_eq!(listed_ids(&b_lists_own), [b_own.as_str()]);
}

fn company_id(id: &str) -> CompanyId {
    CompanyId::from_row(id.parse().expect("a company id"))
}

async fn company_row(app: &TestApp, id: &str) -> company::Model {
    company::Entity::find()
        .filter(company::Column::Id.eq(id.parse::<uuid::Uuid>().expect("a company id")))
        .one(&app.db)
        .await
        .expect("the company reads")
        .expect("the company exists")
}

fn order_variables(name: &str) -> Value {
    json!({
        "company": { "name": "Loja" },
        "customer": { "name": name },
        "notification": { "unsubscribe_url": "https://example.test/u" },
        "order": { "number": "7", "status": "READY", "total": { "minor": 2590, "currency": "BRL" } },
    })
}

#[tokio::test]
async fn rendering_takes_the_companys_template_then_the_default_locale_by_locale() {
    let app = spawn_app().await;
    let a = app.sign_up("tpl-render-a", "RESTAURANT").await;
    let b = app.sign_up("tpl-render-b", "RESTAURANT").await;
    create_whatsapp(&app, &a.access_token).await;
    let state = AppState::connect(app.settings.clone())
        .await
        .expect("the state connects to the test database");
    let a_row = company_row(&app, &a.company_id).await;
    let b_row = company_row(&app, &b.company_id).await;
    let spanish = Locale::parse("es-ES").expect("supported");

    let txn = state
        .begin_for_company(company_id(&a.company_id), "test", Intent::Read)
        .await
        .expect("a transaction");
    let own = render_for(
        &txn,
        &a_row,
        "order_ready",
        Channel::Whatsapp,
        None,
        order_variables("Ana"),
    )
    .await
    .expect("renders");
    let in_spanish = render_for(
        &txn,
        &a_row,
        "order_ready",
        Channel::Whatsapp,
        Some(spanish),
        order_variables("Ana"),
    )
    .await
    .expect("renders");
    let missing = render_for(
        &txn,
        &a_row,
        "order_ready",
        Channel::Whatsapp,
        None,
        json!({}),
    )
    .await;
    let unknown = render_for(&txn, &a_row, "no_such", Channel::Sms, None, json!({})).await;
    txn.commit().await.expect("commits");

    assert_eq!(own.text, "Oi Ana!\nPedido 7 pronto: R$ 25,90");
    assert_eq!(
        in_spanish.text, "¡Hola, Ana! Tu pedido *7* en Loja está listo. 🎉\nTotal: 25,90 R$",
        "the customer's language comes before the company's wording in another"
    );
    assert!(missing.is_err(), "strict undefined: {missing:?}");
    assert!(unknown.is_err(), "{unknown:?}");

    let txn = state
        .begin_for_company(company_id(&b.company_id), "test", Intent::Read)
        .await
        .expect("a transaction");
    let b_renders = render_for(
        &txn,
        &b_row,
        "order_ready",
        Channel::Whatsapp,
        None,
        order_variables("Bia"),
    )
    .await
    .expect("renders");
    txn.commit().await.expect("commits");
    assert_eq!(
        b_renders.text, "Olá, Bia! Seu pedido *7* na Loja está pronto. 🎉\nTotal: R$ 25,90",
        "B gets the system default, never A's template"
    );
}
