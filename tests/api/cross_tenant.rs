//! Company A holding company B's ids — of an order, customer, product, workflow, payment,
//! webhook endpoint, delivery and event — gets exactly what an id that exists nowhere gets,
//! through every query, mutation and nested field of commerce, payments and webhooks; its lists
//! and totals count nothing of B's; and B's rows are unchanged afterwards.
//!
//! (Identity and access have their own in `tenancy.rs`.)

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, text};

/// What A can know of B: B's admin token and one id of every kind B owns.
struct Victim {
    token: String,
    customer: String,
    product: String,
    order: String,
    workflow: String,
    payment: String,
    endpoint: String,
    delivery: String,
    /// Everything B's admin sees, to compare after A is done.
    snapshot: Value,
}

const B_VIEW: &str = "query View($order: ID!, $customer: ID!, $product: ID!, $workflow: ID!,
    $payment: ID!, $endpoint: ID!) {
  order(id: $order) { status version notes total { amountMinor } items { quantity } history { to }
    payments { id status amount { amountMinor } refunded { amountMinor } } }
  customer(id: $customer) { name notes archived }
  product(id: $product) { name active price { amountMinor } stock }
  workflow(id: $workflow) { version active }
  payment(id: $payment) { status refunded { amountMinor } }
  webhookEndpoint(id: $endpoint) { url enabled events description }
  workflows { id version active }
  orders(first: 50) { totalCount }
}";

async fn victim(app: &TestApp) -> Victim {
    let b = app.sign_up("victim-co", "RESTAURANT").await;
    let token = b.access_token.clone();
    let customer = app.create_customer(&token, "Beatriz").await;
    let product = app.create_product(&token, "B-ITEM", 2500, Some(10)).await;
    let order = app.create_order(&token, &customer, &[(&product, 2)]).await;
    let order = text(&order["data"]["createOrder"]["id"]);
    app.transition(&token, &order, "CONFIRMED", None).await;
    let paid = app
        .graphql_as(
            &token,
            "mutation Pay($order: ID!) {
               createPayment(input: { orderId: $order, method: CASH, amountMinor: 1000,
                                      idempotencyKey: \"b-cash\" }) { id } }",
            json!({ "order": order }),
        )
        .await;
    let payment = text(&paid["data"]["createPayment"]["id"]);
    let confirmed = app
        .graphql_as(
            &token,
            "mutation Paid($id: ID!) { markPaymentPaid(id: $id, note: \"till\") { status } }",
            json!({ "id": payment }),
        )
        .await;
    assert_eq!(
        confirmed["data"]["markPaymentPaid"]["status"], "PAID",
        "{confirmed}"
    );
    let endpoint = app
        .graphql_as(
            &token,
            "mutation { createWebhookEndpoint(input: { url: \"http://127.0.0.1:9/b-hook\",
               events: [\"order.*\"], description: \"B's ERP\" }) { endpoint { id } } }",
            json!({}),
        )
        .await;
    let endpoint = text(&endpoint["data"]["createWebhookEndpoint"]["endpoint"]["id"]);
    let delivery = app
        .graphql_as(
            &token,
            "mutation Test($id: ID!) { sendTestWebhook(endpointId: $id) { id } }",
            json!({ "id": endpoint }),
        )
        .await;
    let delivery = text(&delivery["data"]["sendTestWebhook"]["id"]);
    let workflows = app
        .graphql_as(&token, "{ workflows { id active } }", json!({}))
        .await;
    let workflow = workflows["data"]["workflows"]
        .as_array()
        .expect("workflows")
        .iter()
        .find(|workflow| workflow["active"] == true)
        .map(|workflow| text(&workflow["id"]))
        .expect("B has an active workflow");
    let mut victim = Victim {
        token,
        customer,
        product,
        order,
        workflow,
        payment,
        endpoint,
        delivery,
        snapshot: Value::Null,
    };
    victim.snapshot = view(app, &victim).await;
    victim
}

async fn view(app: &TestApp, b: &Victim) -> Value {
    let seen = app
        .graphql_as(
            &b.token,
            B_VIEW,
            json!({
                "order": b.order, "customer": b.customer, "product": b.product,
                "workflow": b.workflow, "payment": b.payment, "endpoint": b.endpoint,
            }),
        )
        .await;
    assert!(seen["errors"].is_null(), "{seen}");
    seen["data"].clone()
}

/// An answer with the id itself blanked out, so B's id and an unknown one compare equal when
/// nothing else tells them apart.
fn blanked(answer: &Value, id: &str) -> String {
    let mut answer = answer.clone();
    if let Some(errors) = answer["errors"].as_array_mut() {
        for error in errors {
            // Request ids differ per request; they are not what the comparison is about.
            if let Some(extensions) = error["extensions"].as_object_mut() {
                extensions.remove("requestId");
            }
        }
    }
    answer.to_string().replace(id, "<id>")
}

#[tokio::test]
async fn company_a_with_company_b_ids_gets_what_unknown_ids_get_and_b_is_untouched() {
    let app = spawn_app().await;
    let b = victim(&app).await;
    let a = app.sign_up("curious-co", "RESTAURANT").await;
    let a_customer = app.create_customer(&a.access_token, "Ana").await;
    let a_product = app
        .create_product(&a.access_token, "A-ITEM", 900, None)
        .await;
    let workflow_input = app
        .graphql_as(
            &b.token,
            "query W($id: ID!) { workflow(id: $id) { name entityType
               states { key label initial terminal releasesStock color }
               transitions { from to label roles requiresPayment } } }",
            json!({ "id": b.workflow }),
        )
        .await["data"]["workflow"]
        .clone();
    let unknown = || uuid::Uuid::new_v4().to_string();

    // Each case: a name, the operation, and the variables with `$ID` where B's id goes.
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "order",
            "query Q($id: ID!) { order(id: $id) { id customer { name } items { product { name } } history { to } payments { id } } }",
            json!({}),
            &b.order,
        ),
        (
            "customer",
            "query Q($id: ID!) { customer(id: $id) { id name email phone document address notes } }",
            json!({}),
            &b.customer,
        ),
        (
            "product",
            "query Q($id: ID!) { product(id: $id) { id name price { amountMinor } } }",
            json!({}),
            &b.product,
        ),
        (
            "workflow",
            "query Q($id: ID!) { workflow(id: $id) { id states { key } } }",
            json!({}),
            &b.workflow,
        ),
        (
            "payment",
            "query Q($id: ID!) { payment(id: $id) { id status refunds { id } } }",
            json!({}),
            &b.payment,
        ),
        (
            "webhookEndpoint",
            "query Q($id: ID!) { webhookEndpoint(id: $id) { id url } }",
            json!({}),
            &b.endpoint,
        ),
        (
            "webhookDeliveries",
            "query Q($id: ID!) { webhookDeliveries(endpointId: $id) { edges { node { id payload attempts { statusCode } } } } }",
            json!({}),
            &b.endpoint,
        ),
        (
            "updateCustomer",
            "mutation M($id: ID!) { updateCustomer(id: $id, input: { name: \"Owned\", notes: \"by A\" }) { id } }",
            json!({}),
            &b.customer,
        ),
        (
            "archiveCustomer",
            "mutation M($id: ID!) { archiveCustomer(id: $id) { id } }",
            json!({}),
            &b.customer,
        ),
        (
            "updateProduct",
            "mutation M($id: ID!) { updateProduct(id: $id, input: { name: \"Owned\", priceMinor: 1, active: false, stock: 0 }) { id } }",
            json!({}),
            &b.product,
        ),
        (
            "archiveProduct",
            "mutation M($id: ID!) { archiveProduct(id: $id) { id } }",
            json!({}),
            &b.product,
        ),
        (
            "updateWorkflow",
            "mutation M($id: ID!, $input: WorkflowInput!) { updateWorkflow(id: $id, input: $input) { id } }",
            json!({ "input": workflow_input }),
            &b.workflow,
        ),
        (
            "activateWorkflow",
            "mutation M($id: ID!) { activateWorkflow(id: $id) { id } }",
            json!({}),
            &b.workflow,
        ),
        (
            "createOrder with B's customer",
            "mutation M($id: ID!, $product: ID!) { createOrder(input: { customerId: $id, items: [{ productId: $product, quantity: 1 }] }) { id } }",
            json!({ "product": a_product }),
            &b.customer,
        ),
        (
            "createOrder with B's product",
            "mutation M($id: ID!, $customer: ID!) { createOrder(input: { customerId: $customer, items: [{ productId: $id, quantity: 1 }] }) { id } }",
            json!({ "customer": a_customer }),
            &b.product,
        ),
        (
            "transitionOrder",
            "mutation M($id: ID!) { transitionOrder(input: { orderId: $id, to: \"PREPARING\", comment: \"A was here\" }) { id } }",
            json!({}),
            &b.order,
        ),
        (
            "createPayment",
            "mutation M($id: ID!) { createPayment(input: { orderId: $id, method: CASH, idempotencyKey: \"a-key\" }) { id } }",
            json!({}),
            &b.order,
        ),
        (
            "capturePayment",
            "mutation M($id: ID!) { capturePayment(id: $id) { id } }",
            json!({}),
            &b.payment,
        ),
        (
            "cancelPayment",
            "mutation M($id: ID!) { cancelPayment(id: $id) { id } }",
            json!({}),
            &b.payment,
        ),
        (
            "markPaymentPaid",
            "mutation M($id: ID!) { markPaymentPaid(id: $id, note: \"A\") { id } }",
            json!({}),
            &b.payment,
        ),
        (
            "refundPayment",
            "mutation M($id: ID!) { refundPayment(input: { paymentId: $id, amountMinor: 100, idempotencyKey: \"a-refund\" }) { id } }",
            json!({}),
            &b.payment,
        ),
        (
            "updateWebhookEndpoint",
            "mutation M($id: ID!) { updateWebhookEndpoint(id: $id, input: { url: \"http://127.0.0.1:9/a\", enabled: false }) { id } }",
            json!({}),
            &b.endpoint,
        ),
        (
            "rotateWebhookSecret",
            "mutation M($id: ID!) { rotateWebhookSecret(id: $id) { secret } }",
            json!({}),
            &b.endpoint,
        ),
        (
            "sendTestWebhook",
            "mutation M($id: ID!) { sendTestWebhook(endpointId: $id) { id } }",
            json!({}),
            &b.endpoint,
        ),
        (
            "redeliverWebhook",
            "mutation M($id: ID!) { redeliverWebhook(deliveryId: $id) { id } }",
            json!({}),
            &b.delivery,
        ),
        (
            "deleteWebhookEndpoint",
            "mutation M($id: ID!) { deleteWebhookEndpoint(id: $id) }",
            json!({}),
            &b.endpoint,
        ),
    ];
    for (name, query, mut variables, b_id) in cases {
        variables["id"] = json!(b_id);
        let with_b = app
            .graphql_as(&a.access_token, query, variables.clone())
            .await;
        let unknown_id = unknown();
        variables["id"] = json!(unknown_id);
        let with_unknown = app.graphql_as(&a.access_token, query, variables).await;
        assert_eq!(
            blanked(&with_b, b_id),
            blanked(&with_unknown, &unknown_id),
            "{name}: B's id must answer exactly as an unknown one"
        );
        let answered_nothing = with_b["data"].as_object().is_none_or(|data| {
            data.values()
                .all(|value| value.is_null() || value["edges"] == json!([]))
        });
        assert!(answered_nothing, "{name} answered something: {with_b}");
    }

    // A's lists and totals hold A's own rows only (B was paid today).
    let (now, day) = (chrono::Utc::now(), chrono::Duration::days(1));
    let lists = app
        .graphql_as(
            &a.access_token,
            "query Lists($from: DateTime!, $to: DateTime!) { orders(first: 100) { totalCount edges { node { id } } }
               customers(first: 100, includeArchived: true) { id }
               products(first: 100, includeInactive: true) { id }
               events(first: 100) { edges { node { id aggregateId } } }
               payments(first: 100) { edges { node { id } } }
               webhookEndpoints { id }
               financialSummary(from: $from, to: $to) {
                 totals { grossMinor refundsMinor netMinor } byMethod { method } } }",
            json!({ "from": now - day, "to": now + day }),
        )
        .await;
    assert!(lists["errors"].is_null(), "{lists}");
    let data = &lists["data"];
    assert_eq!(data["orders"]["totalCount"], 0, "{lists}");
    assert_eq!(data["customers"], json!([{ "id": a_customer }]));
    assert_eq!(data["products"], json!([{ "id": a_product }]));
    assert_eq!(data["payments"]["edges"], json!([]));
    assert_eq!(data["webhookEndpoints"], json!([]));
    assert_eq!(data["financialSummary"]["totals"]["grossMinor"], 0);
    assert_eq!(data["financialSummary"]["byMethod"], json!([]));
    let serialized = lists.to_string();
    // B's order, payment and endpoint have events; none of them may reach A's page.
    for b_id in [&b.order, &b.customer, &b.product, &b.payment, &b.endpoint] {
        assert!(
            !serialized.contains(b_id.as_str()),
            "{b_id} leaked: {lists}"
        );
    }
    // B's rows are exactly as they were.
    assert_eq!(view(&app, &b).await, b.snapshot);
}
