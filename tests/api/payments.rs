//! Payments end to end: PIX and boleto codes, cash, card through a local server playing
//! Stripe, idempotency, refunds, the order's balance, the ledger, and tenancy.

use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_string_contains, header, method, path},
};

use crate::{
    helpers::{TestApp, first_error_code, spawn_app, spawn_app_with, text},
    webhooks::{Shop, order, shop, stripe_signature},
};

const PAYMENT_FIELDS: &str = "id status method providerReference clientSecret failureReason
    amount { amountMinor currency } refunded { amountMinor }
    pix { brCode txid } boleto { barcode digitableLine dueDate }";

async fn create_payment(app: &TestApp, token: &str, input: Value) -> Value {
    app.graphql_as(
        token,
        &format!("mutation P($input: CreatePaymentInput!) {{ createPayment(input: $input) {{ {PAYMENT_FIELDS} }} }}"),
        json!({ "input": input }),
    )
    .await
}

async fn mark_paid(app: &TestApp, token: &str, payment: &str) -> Value {
    app.graphql_as(
        token,
        "mutation M($id: ID!) { markPaymentPaid(id: $id, note: \"counted at the till\") { status } }",
        json!({ "id": payment }),
    )
    .await
}

async fn refund(app: &TestApp, token: &str, input: Value) -> Value {
    app.graphql_as(
        token,
        "mutation R($input: RefundPaymentInput!) { refundPayment(input: $input) { id status amount { amountMinor } } }",
        json!({ "input": input }),
    )
    .await
}

async fn balance(app: &TestApp, token: &str, order: &str) -> Value {
    let body = app
        .graphql_as(
            token,
            "query O($id: ID!) { order(id: $id) { paymentStatus amountPaid { amountMinor } amountDue { amountMinor }
                payments { id status } } }",
            json!({ "id": order }),
        )
        .await;
    body["data"]["order"].clone()
}

/// Pays `amount` (or what is due) of `order` in cash; returns the payment id.
pub async fn pay_cash(
    app: &TestApp,
    token: &str,
    order: &str,
    amount: Option<i64>,
    key: &str,
) -> String {
    let created = create_payment(
        app,
        token,
        json!({ "orderId": order, "method": "CASH", "amountMinor": amount, "idempotencyKey": key }),
    )
    .await;
    let id = text(&created["data"]["createPayment"]["id"]);
    let paid = mark_paid(app, token, &id).await;
    assert_eq!(paid["data"]["markPaymentPaid"]["status"], "PAID", "{paid}");
    id
}

async fn settings(app: &TestApp, token: &str, input: Value) -> Value {
    app.graphql_as(
        token,
        "mutation S($input: UpdatePaymentSettingsInput!) { updatePaymentSettings(input: $input) {
            pixKey pixMerchantName stripeSecretKeySet stripeWebhookSecretSet } }",
        json!({ "input": input }),
    )
    .await
}

/// CRC16-CCITT-FALSE, bit by bit, as the BR Code manual describes it.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for byte in data {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[tokio::test]
async fn a_pix_payment_carries_a_br_code_for_what_is_due_and_staff_confirm_it() {
    let app = spawn_app().await;
    let shop = shop(&app, "pix-shop").await;
    let token = &shop.tenant.access_token;
    settings(
        &app,
        token,
        json!({ "pixKey": "pagamentos@pix-shop.test", "pixMerchantName": "Padaria São João", "pixMerchantCity": "Brasília" }),
    )
    .await;
    let order_id = order(&app, &shop).await;

    let created = create_payment(
        &app,
        token,
        json!({ "orderId": order_id, "method": "PIX", "idempotencyKey": "pix-1" }),
    )
    .await;
    let payment = &created["data"]["createPayment"];
    let code = text(&payment["pix"]["brCode"]);
    let unpaid = balance(&app, token, &order_id).await;
    let paid = mark_paid(&app, token, &text(&payment["id"])).await;
    let settled = balance(&app, token, &order_id).await;

    assert_eq!(payment["status"], "PENDING", "{created}");
    assert_eq!(payment["amount"]["amountMinor"], 2500);
    assert!(code.starts_with("000201"), "{code}");
    assert!(code.contains("0014br.gov.bcb.pix"), "{code}");
    assert!(code.contains("540525.00"), "amount 25.00: {code}");
    assert!(
        code.contains("Padaria Sao Joao") && code.contains("Brasilia"),
        "{code}"
    );
    assert!(code.contains(&format!(
        "05{:02}{}",
        text(&payment["pix"]["txid"]).len(),
        text(&payment["pix"]["txid"])
    )));
    let (body, crc) = code.split_at(code.len() - 4);
    assert!(body.ends_with("6304"));
    assert_eq!(crc, format!("{:04X}", crc16(body.as_bytes())));
    assert_eq!(unpaid["paymentStatus"], "UNPAID");
    assert_eq!(paid["data"]["markPaymentPaid"]["status"], "PAID", "{paid}");
    assert_eq!(settled["paymentStatus"], "PAID");
    assert_eq!(settled["amountDue"]["amountMinor"], 0);
}

#[tokio::test]
async fn a_boleto_payment_has_a_barcode_and_line_that_encode_its_amount() {
    let app = spawn_app().await;
    let shop = shop(&app, "boleto-shop").await;
    let token = &shop.tenant.access_token;
    settings(
        &app,
        token,
        json!({ "boletoBankCode": "341", "boletoAgency": "1234", "boletoAccount": "5678901", "boletoWallet": "9" }),
    )
    .await;
    let order_id = order(&app, &shop).await;

    let created = create_payment(
        &app,
        token,
        json!({ "orderId": order_id, "method": "BOLETO", "idempotencyKey": "boleto-1" }),
    )
    .await;
    let boleto = &created["data"]["createPayment"]["boleto"];
    let barcode = text(&boleto["barcode"]);
    let line = text(&boleto["digitableLine"]);

    assert_eq!(barcode.len(), 44, "{created}");
    assert_eq!(line.len(), 47);
    assert!(
        barcode.starts_with("3419"),
        "bank 341, currency 9: {barcode}"
    );
    assert_eq!(&barcode[9..19], "0000002500", "amount R$ 25,00");
    assert_eq!(
        &line[33..37],
        &barcode[5..9],
        "the line carries the due-date factor"
    );
    assert_eq!(&line[37..47], &barcode[9..19], "and the amount");
    assert!(boleto["dueDate"].is_string());
}

#[tokio::test]
async fn one_idempotency_key_makes_one_payment_even_when_twenty_requests_race() {
    let app = spawn_app().await;
    let shop = shop(&app, "idempotent").await;
    let token = shop.tenant.access_token.clone();
    let order_id = order(&app, &shop).await;
    let input = json!({ "orderId": order_id, "method": "CASH", "idempotencyKey": "till-7" });

    let attempts = (0..20).map(|_| create_payment(&app, &token, input.clone()));
    let answers = futures_util::future::join_all(attempts).await;
    let different = create_payment(
        &app,
        &token,
        json!({ "orderId": order_id, "method": "CASH", "amountMinor": 100, "idempotencyKey": "till-7" }),
    )
    .await;
    let after = balance(&app, &token, &order_id).await;

    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|answer| text(&answer["data"]["createPayment"]["id"]))
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(first_error_code(&different), "CONFLICT", "{different}");
    assert_eq!(after["payments"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn an_orders_payment_status_follows_partial_payments_and_refunds() {
    let app = spawn_app().await;
    let shop = shop(&app, "balances").await;
    let token = shop.tenant.access_token.clone();
    let order_id = order(&app, &shop).await;

    let first = pay_cash(&app, &token, &order_id, Some(1000), "part-1").await;
    let partly = balance(&app, &token, &order_id).await;
    pay_cash(&app, &token, &order_id, None, "part-2").await;
    let paid = balance(&app, &token, &order_id).await;
    pay_cash(&app, &token, &order_id, Some(500), "tip").await;
    let overpaid = balance(&app, &token, &order_id).await;
    let refunded = refund(
        &app,
        &token,
        json!({ "paymentId": first, "amountMinor": 800, "reason": "wrong change", "idempotencyKey": "r-1" }),
    )
    .await;
    let after_refund = balance(&app, &token, &order_id).await;

    assert_eq!(partly["paymentStatus"], "PARTIALLY_PAID");
    assert_eq!(partly["amountDue"]["amountMinor"], 1500);
    assert_eq!(paid["paymentStatus"], "PAID");
    assert_eq!(overpaid["paymentStatus"], "OVERPAID");
    assert_eq!(overpaid["amountPaid"]["amountMinor"], 3000);
    assert_eq!(
        refunded["data"]["refundPayment"]["status"], "SUCCEEDED",
        "{refunded}"
    );
    assert_eq!(after_refund["paymentStatus"], "PARTIALLY_REFUNDED");
    assert_eq!(after_refund["amountPaid"]["amountMinor"], 2200);
    assert_eq!(after_refund["amountDue"]["amountMinor"], 300);
}

#[tokio::test]
async fn refunds_never_exceed_what_was_paid() {
    let app = spawn_app().await;
    let shop = shop(&app, "refunds").await;
    let token = shop.tenant.access_token.clone();
    let order_id = order(&app, &shop).await;
    // On an order of its own: an open payment would limit what the other order's may ask for.
    let unpaid_order = order(&app, &shop).await;
    let unpaid = text(
        &create_payment(
            &app,
            &token,
            json!({ "orderId": unpaid_order, "method": "CASH", "amountMinor": 100, "idempotencyKey": "unpaid" }),
        )
        .await["data"]["createPayment"]["id"],
    );
    let payment = pay_cash(&app, &token, &order_id, None, "full").await;

    let of_unpaid = refund(
        &app,
        &token,
        json!({ "paymentId": unpaid, "idempotencyKey": "u" }),
    )
    .await;
    let part = refund(
        &app,
        &token,
        json!({ "paymentId": payment, "amountMinor": 1000, "idempotencyKey": "a" }),
    )
    .await;
    let repeated = refund(
        &app,
        &token,
        json!({ "paymentId": payment, "amountMinor": 1000, "idempotencyKey": "a" }),
    )
    .await;
    let too_much = refund(
        &app,
        &token,
        json!({ "paymentId": payment, "amountMinor": 1501, "idempotencyKey": "b" }),
    )
    .await;
    let rest = refund(
        &app,
        &token,
        json!({ "paymentId": payment, "idempotencyKey": "c" }),
    )
    .await;
    let nothing_left = refund(
        &app,
        &token,
        json!({ "paymentId": payment, "amountMinor": 1, "idempotencyKey": "d" }),
    )
    .await;
    let after = balance(&app, &token, &order_id).await;

    assert_eq!(first_error_code(&of_unpaid), "VALIDATION", "{of_unpaid}");
    assert_eq!(
        part["data"]["refundPayment"]["amount"]["amountMinor"], 1000,
        "{part}"
    );
    assert_eq!(
        repeated["data"]["refundPayment"]["id"], part["data"]["refundPayment"]["id"],
        "the same key gives the same refund"
    );
    assert_eq!(first_error_code(&too_much), "VALIDATION", "{too_much}");
    assert!(
        too_much["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1500"),
        "{too_much}"
    );
    assert_eq!(
        rest["data"]["refundPayment"]["amount"]["amountMinor"], 1500,
        "{rest}"
    );
    assert_eq!(first_error_code(&nothing_left), "VALIDATION");
    assert_eq!(after["paymentStatus"], "REFUNDED", "{after}");
}

#[tokio::test]
async fn a_pickup_that_requires_payment_is_refused_until_the_order_is_paid() {
    let app = spawn_app().await;
    let tenant = app.sign_up("bike-pay", "BIKE_SHOP").await;
    let token = tenant.access_token.clone();
    let customer = app.create_customer(&token, "Rui").await;
    let product = app.create_product(&token, "REVISAO", 18000, None).await;
    let created = app.create_order(&token, &customer, &[(&product, 1)]).await;
    let order_id = text(&created["data"]["createOrder"]["id"]);
    for to in [
        "QUOTE_SENT",
        "QUOTE_APPROVED",
        "IN_PROGRESS",
        "READY_FOR_PICKUP",
    ] {
        let moved = app.transition(&token, &order_id, to, None).await;
        assert_eq!(moved["data"]["transitionOrder"]["status"], to, "{moved}");
    }

    let unpaid = app.transition(&token, &order_id, "COMPLETED", None).await;
    pay_cash(&app, &token, &order_id, Some(10000), "half").await;
    let half_paid = app.transition(&token, &order_id, "COMPLETED", None).await;
    pay_cash(&app, &token, &order_id, None, "rest").await;
    let paid = app.transition(&token, &order_id, "COMPLETED", None).await;

    assert_eq!(first_error_code(&unpaid), "VALIDATION", "{unpaid}");
    assert_eq!(first_error_code(&half_paid), "VALIDATION", "{half_paid}");
    assert_eq!(
        paid["data"]["transitionOrder"]["status"], "COMPLETED",
        "{paid}"
    );
}

#[tokio::test]
async fn the_financial_summary_adds_up_the_payments() {
    let app = spawn_app().await;
    let shop = shop(&app, "summary").await;
    let token = shop.tenant.access_token.clone();
    settings(
        &app,
        &token,
        json!({ "pixKey": "+5511987654321", "pixMerchantName": "Summary", "pixMerchantCity": "Recife" }),
    )
    .await;
    let first = order(&app, &shop).await;
    let second = order(&app, &shop).await;
    let cash = pay_cash(&app, &token, &first, None, "cash").await;
    let pix = create_payment(
        &app,
        &token,
        json!({ "orderId": second, "method": "PIX", "amountMinor": 1000, "idempotencyKey": "pix" }),
    )
    .await;
    mark_paid(&app, &token, &text(&pix["data"]["createPayment"]["id"])).await;
    refund(
        &app,
        &token,
        json!({ "paymentId": cash, "amountMinor": 500, "idempotencyKey": "back" }),
    )
    .await;
    // Created, never paid: not money.
    create_payment(
        &app,
        &token,
        json!({ "orderId": second, "method": "CASH", "amountMinor": 700, "idempotencyKey": "open" }),
    )
    .await;

    let now = chrono::Utc::now();
    let body = app
        .graphql_as(
            &token,
            "query F($from: DateTime!, $to: DateTime!) { financialSummary(from: $from, to: $to) {
                currency totals { grossMinor refundsMinor feesMinor netMinor }
                byMethod { method totals { grossMinor refundsMinor netMinor } }
                byDay { date totals { netMinor } } } }",
            json!({ "from": (now - chrono::Duration::hours(1)).to_rfc3339(), "to": (now + chrono::Duration::hours(1)).to_rfc3339() }),
        )
        .await;
    let summary = &body["data"]["financialSummary"];

    assert_eq!(
        summary["totals"],
        json!({ "grossMinor": 3500, "refundsMinor": 500, "feesMinor": 0, "netMinor": 3000 }),
        "{body}"
    );
    assert_eq!(
        summary["byMethod"],
        json!([
            { "method": "CASH", "totals": { "grossMinor": 2500, "refundsMinor": 500, "netMinor": 2000 } },
            { "method": "PIX", "totals": { "grossMinor": 1000, "refundsMinor": 0, "netMinor": 1000 } },
        ])
    );
    let days = summary["byDay"].as_array().expect("days");
    let net_by_day: i64 = days
        .iter()
        .filter_map(|day| day["totals"]["netMinor"].as_i64())
        .sum();
    assert_eq!(net_by_day, 3000);
    assert_eq!(summary["currency"], "BRL");
}

#[tokio::test]
async fn a_company_never_sees_or_moves_another_companys_payments() {
    let app = spawn_app().await;
    let alpha = shop(&app, "alpha-pay").await;
    let beta = shop(&app, "beta-pay").await;
    let beta_order = order(&app, &beta).await;
    let beta_payment = text(
        &create_payment(
            &app,
            &beta.tenant.access_token,
            json!({ "orderId": beta_order, "method": "CASH", "idempotencyKey": "k" }),
        )
        .await["data"]["createPayment"]["id"],
    );
    let token = &alpha.tenant.access_token;

    let read = app
        .graphql_as(
            token,
            "query P($id: ID!) { payment(id: $id) { id } payments { edges { node { id } } } }",
            json!({ "id": beta_payment }),
        )
        .await;
    let marked = mark_paid(&app, token, &beta_payment).await;
    let refunded = refund(
        &app,
        token,
        json!({ "paymentId": beta_payment, "idempotencyKey": "x" }),
    )
    .await;
    let created = create_payment(
        &app,
        token,
        json!({ "orderId": beta_order, "method": "CASH", "idempotencyKey": "k" }),
    )
    .await;
    let beta_view = balance(&app, &beta.tenant.access_token, &beta_order).await;

    assert!(read["data"]["payment"].is_null(), "{read}");
    assert_eq!(read["data"]["payments"]["edges"], json!([]));
    assert_eq!(first_error_code(&marked), "NOT_FOUND", "{marked}");
    assert_eq!(first_error_code(&refunded), "NOT_FOUND", "{refunded}");
    assert_eq!(first_error_code(&created), "NOT_FOUND", "{created}");
    assert_eq!(beta_view["payments"][0]["status"], "PENDING");
}

#[tokio::test]
async fn payment_settings_are_for_admins_and_secrets_never_come_back() {
    let app = spawn_app().await;
    let tenant = app.sign_up("settings-pay", "RESTAURANT").await;
    app.invite(&tenant.access_token, "staff@settings-pay.test", &["STAFF"])
        .await;
    let staff = app
        .login("staff@settings-pay.test", Some("settings-pay"))
        .await;

    let saved = settings(
        &app,
        &tenant.access_token,
        json!({ "stripeSecretKey": "sk_test_abcdefghijklmnop", "stripeWebhookSecret": "whsec_abcdefghijklmnop" }),
    )
    .await;
    let bad_key = settings(&app, &tenant.access_token, json!({ "pixKey": "not a key" })).await;
    let by_staff = settings(&app, &staff, json!({ "pixKey": "a@b.test" })).await;

    let updated = &saved["data"]["updatePaymentSettings"];
    assert_eq!(updated["stripeSecretKeySet"], true, "{saved}");
    assert_eq!(updated["stripeWebhookSecretSet"], true);
    assert!(!saved.to_string().contains("sk_test_abcdefghijklmnop"));
    assert_eq!(first_error_code(&bad_key), "VALIDATION", "{bad_key}");
    assert_eq!(first_error_code(&by_staff), "FORBIDDEN", "{by_staff}");
}

const WEBHOOK_SECRET: &str = "whsec_stripe_test_0123456789";

/// A Stripe event about PaymentIntent `intent`, as Stripe posts it.
fn stripe_event(id: &str, event_type: &str, object: Value) -> String {
    json!({ "id": id, "object": "event", "type": event_type, "data": { "object": object } })
        .to_string()
}

async fn post_stripe_event(
    app: &TestApp,
    company: &str,
    secret: &str,
    body: &str,
) -> reqwest::Response {
    let signature = stripe_signature(secret, chrono::Utc::now().timestamp(), body);
    app.client
        .post(format!("{}/webhooks/in/stripe/{company}", app.address))
        .header("stripe-signature", signature)
        .body(body.to_string())
        .send()
        .await
        .expect("reachable")
}

fn intent(id: &str, status: &str) -> Value {
    json!({ "id": id, "object": "payment_intent", "amount": 2500, "currency": "brl",
        "status": status, "client_secret": format!("{id}_secret_abc"), "amount_received": 0,
        "capture_method": "manual" })
}

async fn card_shop(app: &TestApp, slug: &str) -> Shop {
    let shop = shop(app, slug).await;
    let saved = settings(
        app,
        &shop.tenant.access_token,
        json!({ "stripeSecretKey": "sk_test_platform", "stripeWebhookSecret": WEBHOOK_SECRET }),
    )
    .await;
    assert_eq!(
        saved["data"]["updatePaymentSettings"]["stripeSecretKeySet"], true,
        "{saved}"
    );
    shop
}

#[tokio::test]
async fn a_card_payment_moves_with_stripe_and_its_webhooks_apply_once() {
    let stripe = MockServer::start().await;
    let app = spawn_app_with(|settings| settings.stripe_api_base = stripe.uri()).await;
    let shop = card_shop(&app, "card-shop").await;
    let token = shop.tenant.access_token.clone();
    let order_id = order(&app, &shop).await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .and(header("authorization", "Bearer sk_test_platform"))
        .and(body_string_contains("amount=2500"))
        .and(body_string_contains("currency=brl"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(intent("pi_card1", "requires_payment_method")),
        )
        .expect(1)
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents/pi_card1/capture"))
        .respond_with(ResponseTemplate::new(200).set_body_json(intent("pi_card1", "succeeded")))
        .expect(1)
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .and(body_string_contains("payment_intent=pi_card1"))
        .and(body_string_contains("amount=1000"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "id": "re_1", "object": "refund", "status": "succeeded", "amount": 1000 }),
        ))
        .expect(1)
        .mount(&stripe)
        .await;

    let created = create_payment(
        &app,
        &token,
        json!({ "orderId": order_id, "method": "CARD", "idempotencyKey": "card-1" }),
    )
    .await;
    let payment = created["data"]["createPayment"].clone();
    let payment_id = text(&payment["id"]);
    let retried = create_payment(
        &app,
        &token,
        json!({ "orderId": order_id, "method": "CARD", "idempotencyKey": "card-1" }),
    )
    .await;
    let authorized = stripe_event(
        "evt_auth",
        "payment_intent.amount_capturable_updated",
        intent("pi_card1", "requires_capture"),
    );
    let answer =
        post_stripe_event(&app, &shop.tenant.company_id, WEBHOOK_SECRET, &authorized).await;
    assert_eq!(answer.status(), 200);
    let captured = app
        .graphql_as(
            &token,
            "mutation C($id: ID!) { capturePayment(id: $id) { status } }",
            json!({ "id": payment_id }),
        )
        .await;
    let succeeded = stripe_event(
        "evt_paid",
        "payment_intent.succeeded",
        intent("pi_card1", "succeeded"),
    );
    let first = post_stripe_event(&app, &shop.tenant.company_id, WEBHOOK_SECRET, &succeeded).await;
    let second = post_stripe_event(&app, &shop.tenant.company_id, WEBHOOK_SECRET, &succeeded).await;
    let refunded = refund(
        &app,
        &token,
        json!({ "paymentId": payment_id, "amountMinor": 1000, "idempotencyKey": "card-refund" }),
    )
    .await;
    let charge_refunded = stripe_event(
        "evt_refund",
        "charge.refunded",
        json!({ "id": "ch_1", "object": "charge", "payment_intent": "pi_card1", "amount": 2500, "amount_refunded": 1000 }),
    );
    let refund_echo = post_stripe_event(
        &app,
        &shop.tenant.company_id,
        WEBHOOK_SECRET,
        &charge_refunded,
    )
    .await;
    let after = app
        .graphql_as(
            &token,
            "query P($id: ID!) { payment(id: $id) { status refunded { amountMinor } refunds { id } } }",
            json!({ "id": payment_id }),
        )
        .await;

    assert_eq!(payment["status"], "PENDING", "{created}");
    assert_eq!(payment["providerReference"], "pi_card1");
    assert_eq!(payment["clientSecret"], "pi_card1_secret_abc");
    assert_eq!(
        retried["data"]["createPayment"]["id"], payment["id"],
        "{retried}"
    );
    assert_eq!(
        captured["data"]["capturePayment"]["status"], "PAID",
        "{captured}"
    );
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.expect("json");
    assert_eq!(second["duplicate"], true);
    assert_eq!(
        refunded["data"]["refundPayment"]["status"], "SUCCEEDED",
        "{refunded}"
    );
    assert_eq!(refund_echo.status(), 200);
    let after = &after["data"]["payment"];
    assert_eq!(after["status"], "PARTIALLY_REFUNDED", "{after}");
    assert_eq!(
        after["refunded"]["amountMinor"], 1000,
        "the echoed refund is not counted twice"
    );
    assert_eq!(after["refunds"].as_array().map(Vec::len), Some(1));
    let summary = app
        .graphql_as(
            &token,
            "query F($from: DateTime!, $to: DateTime!) { financialSummary(from: $from, to: $to) { totals { grossMinor refundsMinor } } }",
            json!({ "from": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
                "to": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339() }),
        )
        .await;
    assert_eq!(
        summary["data"]["financialSummary"]["totals"],
        json!({ "grossMinor": 2500, "refundsMinor": 1000 }),
        "one charge however many success signals: {summary}"
    );
}

#[tokio::test]
async fn a_declined_card_fails_the_payment_with_the_providers_reason() {
    let stripe = MockServer::start().await;
    let app = spawn_app_with(|settings| settings.stripe_api_base = stripe.uri()).await;
    let shop = card_shop(&app, "declined").await;
    let order_id = order(&app, &shop).await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(402).set_body_json(json!({ "error": {
            "type": "card_error", "code": "card_declined", "message": "Your card was declined." } })))
        .mount(&stripe)
        .await;

    let created = create_payment(
        &app,
        &shop.tenant.access_token,
        json!({ "orderId": order_id, "method": "CARD", "idempotencyKey": "declined" }),
    )
    .await;

    let payment = &created["data"]["createPayment"];
    assert_eq!(payment["status"], "FAILED", "{created}");
    assert_eq!(payment["failureReason"], "Your card was declined.");
}

#[tokio::test]
async fn a_stripe_event_signed_by_one_company_never_moves_another_companys_payment() {
    let stripe = MockServer::start().await;
    let app = spawn_app_with(|settings| settings.stripe_api_base = stripe.uri()).await;
    let alpha = card_shop(&app, "alpha-card").await;
    let beta = card_shop(&app, "beta-card").await;
    // Beta's own secret differs from alpha's.
    settings(
        &app,
        &beta.tenant.access_token,
        json!({ "stripeWebhookSecret": "whsec_beta_only_0123456789" }),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(intent("pi_beta", "requires_payment_method")),
        )
        .mount(&stripe)
        .await;
    let beta_order = order(&app, &beta).await;
    let beta_payment = create_payment(
        &app,
        &beta.tenant.access_token,
        json!({ "orderId": beta_order, "method": "CARD", "idempotencyKey": "b" }),
    )
    .await;
    let event = stripe_event(
        "evt_cross",
        "payment_intent.succeeded",
        intent("pi_beta", "succeeded"),
    );

    let via_alpha = post_stripe_event(&app, &alpha.tenant.company_id, WEBHOOK_SECRET, &event).await;
    let to_beta_with_alphas_secret =
        post_stripe_event(&app, &beta.tenant.company_id, WEBHOOK_SECRET, &event).await;
    let after = balance(&app, &beta.tenant.access_token, &beta_order).await;

    assert_eq!(
        beta_payment["data"]["createPayment"]["providerReference"],
        "pi_beta"
    );
    assert_eq!(
        via_alpha.status(),
        200,
        "verified for alpha, but names no alpha payment"
    );
    assert_eq!(to_beta_with_alphas_secret.status(), 400);
    assert_eq!(after["payments"][0]["status"], "PENDING", "{after}");
    assert_eq!(after["paymentStatus"], "UNPAID");
}

#[tokio::test]
async fn a_retry_while_the_card_provider_is_still_answering_is_a_conflict() {
    let stripe = MockServer::start().await;
    let app = spawn_app_with(|settings| settings.stripe_api_base = stripe.uri()).await;
    let shop = card_shop(&app, "in-flight").await;
    let order_id = order(&app, &shop).await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(intent("pi_slow", "requires_payment_method"))
                .set_delay(std::time::Duration::from_millis(1500)),
        )
        .expect(1)
        .mount(&stripe)
        .await;
    let input = json!({ "orderId": order_id, "method": "CARD", "idempotencyKey": "slow" });

    let first = create_payment(&app, &shop.tenant.access_token, input.clone());
    let retry = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        create_payment(&app, &shop.tenant.access_token, input.clone()).await
    };
    let (first, retry) = tokio::join!(first, retry);
    let later = create_payment(&app, &shop.tenant.access_token, input).await;

    assert_eq!(
        first["data"]["createPayment"]["providerReference"], "pi_slow",
        "{first}"
    );
    assert_eq!(first_error_code(&retry), "CONFLICT", "{retry}");
    assert_eq!(
        later["data"]["createPayment"]["id"],
        first["data"]["createPayment"]["id"]
    );
}

#[tokio::test]
async fn payment_events_reach_webhook_endpoints() {
    let app = spawn_app().await;
    let shop = shop(&app, "pay-events").await;
    let token = shop.tenant.access_token.clone();
    let receiver = crate::webhooks::Receiver::start().await;
    crate::webhooks::register(&app, &token, &receiver.url, &["payment.*"]).await;
    let order_id = order(&app, &shop).await;

    let payment = pay_cash(&app, &token, &order_id, None, "evented").await;
    let received = receiver
        .wait_for(2, std::time::Duration::from_secs(10))
        .await;

    let events: Vec<(String, String)> = received
        .iter()
        .map(|delivery| {
            let body: Value = serde_json::from_str(&delivery.body).expect("json");
            (text(&body["type"]), text(&body["data"]["paymentId"]))
        })
        .collect();
    assert_eq!(
        events,
        [
            ("payment.created".to_string(), payment.clone()),
            ("payment.paid".to_string(), payment)
        ]
    );
}

#[tokio::test]
async fn a_card_refund_the_provider_could_not_answer_is_retried_with_the_same_key() {
    // Stripe is down for the first refund request, up for the second.
    refund_retried_after(ResponseTemplate::new(503), "refund-retry").await;
}

#[tokio::test]
async fn a_card_refund_whose_answer_could_not_be_read_is_retried_with_the_same_key() {
    // The refund may have been made although its answer is unreadable: not a refusal.
    refund_retried_after(
        ResponseTemplate::new(200).set_body_string("<html>upstream hiccup</html>"),
        "refund-garbled",
    )
    .await;
}

/// A card refund whose first request gets `first_answer`: it stays pending with its amount
/// reserved, and the retry with the same key completes it once.
async fn refund_retried_after(first_answer: ResponseTemplate, slug: &str) {
    let stripe = MockServer::start().await;
    let app = spawn_app_with(|settings| settings.stripe_api_base = stripe.uri()).await;
    let shop = card_shop(&app, slug).await;
    let token = shop.tenant.access_token.clone();
    let order_id = order(&app, &shop).await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(intent("pi_retry", "requires_payment_method")),
        )
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(first_answer)
        .up_to_n_times(1)
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "id": "re_retry", "object": "refund", "status": "succeeded", "amount": 1000 }),
        ))
        .expect(1)
        .mount(&stripe)
        .await;
    let created = create_payment(
        &app,
        &token,
        json!({ "orderId": order_id, "method": "CARD", "idempotencyKey": "card" }),
    )
    .await;
    let payment_id = text(&created["data"]["createPayment"]["id"]);
    let paid = stripe_event(
        "evt_ok",
        "payment_intent.succeeded",
        intent("pi_retry", "succeeded"),
    );
    post_stripe_event(&app, &shop.tenant.company_id, WEBHOOK_SECRET, &paid).await;
    let input =
        json!({ "paymentId": payment_id, "amountMinor": 1000, "idempotencyKey": "give-back" });

    let first = refund(&app, &token, input.clone()).await;
    let retried = refund(&app, &token, input).await;
    let after = app
        .graphql_as(
            &token,
            "query P($id: ID!) { payment(id: $id) { status refunded { amountMinor } refunds { status } } }",
            json!({ "id": payment_id }),
        )
        .await;

    assert_eq!(
        first_error_code(&first),
        "PAYMENT_PROVIDER_ERROR",
        "{first}"
    );
    assert_eq!(first["errors"][0]["extensions"]["retryable"], true);
    assert_eq!(
        retried["data"]["refundPayment"]["status"], "SUCCEEDED",
        "{retried}"
    );
    let payment = &after["data"]["payment"];
    assert_eq!(payment["status"], "PARTIALLY_REFUNDED", "{after}");
    assert_eq!(payment["refunded"]["amountMinor"], 1000);
    assert_eq!(payment["refunds"], json!([{ "status": "SUCCEEDED" }]));
}

#[tokio::test]
async fn unpaid_pix_charges_and_boletos_expire_and_say_so() {
    let app = spawn_app().await;
    let shop = shop(&app, "expiry").await;
    let token = shop.tenant.access_token.clone();
    settings(
        &app,
        &token,
        json!({ "pixKey": "caixa@expiry.test", "pixMerchantName": "Expiry", "pixMerchantCity": "Natal",
            "boletoBankCode": "001", "boletoAgency": "1234", "boletoAccount": "123456", "boletoWallet": "17" }),
    )
    .await;
    let order_id = order(&app, &shop).await;
    let mut ids = Vec::new();
    for method in ["PIX", "BOLETO", "CASH"] {
        let created = create_payment(
            &app,
            &token,
            json!({ "orderId": order_id, "method": method, "amountMinor": 100, "idempotencyKey": method }),
        )
        .await;
        ids.push(text(&created["data"]["createPayment"]["id"]));
    }

    // Four days on: past the PIX charge's 24 h and the boleto's due date (3 days).
    let later = chrono::Utc::now() + chrono::Duration::days(4);
    let expired = api::services::payments::expire_overdue(&app.db, later)
        .await
        .expect("sweep");
    let again = api::services::payments::expire_overdue(&app.db, later)
        .await
        .expect("sweep");
    let statuses = balance(&app, &token, &order_id).await["payments"].clone();
    let pay_expired = mark_paid(&app, &token, &ids[0]).await;

    assert_eq!(expired, 2);
    assert_eq!(again, 0, "an expired payment expires once");
    assert_eq!(
        statuses,
        json!([
            { "id": ids[0], "status": "EXPIRED" },
            { "id": ids[1], "status": "EXPIRED" },
            { "id": ids[2], "status": "PENDING" },
        ])
    );
    assert_eq!(
        first_error_code(&pay_expired),
        "VALIDATION",
        "{pay_expired}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let events = app
            .graphql_as(
                &token,
                "{ events(types: [\"payment.expired\"]) { edges { node { type } } } }",
                json!({}),
            )
            .await;
        let count = events["data"]["events"]["edges"]
            .as_array()
            .map_or(0, Vec::len);
        if count == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{events}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The payment's status, failure reason and refunded amount, as the API shows them.
async fn payment_state(app: &TestApp, token: &str, payment: &str) -> Value {
    let body = app
        .graphql_as(
            token,
            "query P($id: ID!) { payment(id: $id) { status failureReason providerReference
                refunded { amountMinor } refunds { status amount { amountMinor } } } }",
            json!({ "id": payment }),
        )
        .await;
    assert!(body["data"]["payment"].is_object(), "{body}");
    body["data"]["payment"].clone()
}

/// Answers every PaymentIntent creation with the intent `id`, waiting for the payer.
async fn open_intents_as(stripe: &MockServer, id: &str) {
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(intent(id, "requires_payment_method")),
        )
        .mount(stripe)
        .await;
}

/// A card payment of what `order_id` owes, its intent opened by the Stripe double; returns its id.
async fn card_payment(app: &TestApp, token: &str, order_id: &str, key: &str) -> String {
    let created = create_payment(
        app,
        token,
        json!({ "orderId": order_id, "method": "CARD", "idempotencyKey": key }),
    )
    .await;
    assert_eq!(
        created["data"]["createPayment"]["status"], "PENDING",
        "{created}"
    );
    text(&created["data"]["createPayment"]["id"])
}

async fn capture(app: &TestApp, token: &str, payment: &str) -> Value {
    app.graphql_as(
        token,
        "mutation C($id: ID!) { capturePayment(id: $id) { status failureReason } }",
        json!({ "id": payment }),
    )
    .await
}

#[tokio::test]
async fn a_card_declined_once_can_still_be_authorized_and_captured_on_its_open_intent() {
    let stripe = MockServer::start().await;
    let app = spawn_app_with(|settings| settings.stripe_api_base = stripe.uri()).await;
    let shop = card_shop(&app, "second-try").await;
    let token = shop.tenant.access_token.clone();
    let company = shop.tenant.company_id.clone();
    let order_id = order(&app, &shop).await;
    open_intents_as(&stripe, "pi_again").await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents/pi_again/capture"))
        .respond_with(ResponseTemplate::new(200).set_body_json(intent("pi_again", "succeeded")))
        .expect(1)
        .mount(&stripe)
        .await;
    let payment = card_payment(&app, &token, &order_id, "card").await;

    // Stripe.js confirms with a card that is declined: the intent goes back to
    // requires_payment_method and stays open for another card.
    let mut declined = intent("pi_again", "requires_payment_method");
    declined["last_payment_error"] = json!({ "type": "card_error", "code": "card_declined", "message": "Your card was declined." });
    let failed_event = stripe_event("evt_declined", "payment_intent.payment_failed", declined);
    post_stripe_event(&app, &company, WEBHOOK_SECRET, &failed_event).await;
    let after_decline = payment_state(&app, &token, &payment).await;
    // The payer tries another card with the same client secret; this one is authorized.
    let authorized = stripe_event(
        "evt_authorized",
        "payment_intent.amount_capturable_updated",
        intent("pi_again", "requires_capture"),
    );
    let answer = post_stripe_event(&app, &company, WEBHOOK_SECRET, &authorized).await;
    let after_authorization = payment_state(&app, &token, &payment).await;
    let captured = capture(&app, &token, &payment).await;
    // Stripe's delivery of the first decline again, late: it undoes nothing.
    let late = stripe_event(
        "evt_declined_late",
        "payment_intent.payment_failed",
        intent("pi_again", "requires_payment_method"),
    );
    post_stripe_event(&app, &company, WEBHOOK_SECRET, &late).await;
    let after = balance(&app, &token, &order_id).await;

    assert_eq!(after_decline["status"], "FAILED", "{after_decline}");
    assert_eq!(after_decline["failureReason"], "Your card was declined.");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        after_authorization["status"], "AUTHORIZED",
        "{after_authorization}"
    );
    assert!(
        after_authorization["failureReason"].is_null(),
        "the old decline no longer applies: {after_authorization}"
    );
    assert_eq!(
        captured["data"]["capturePayment"]["status"], "PAID",
        "{captured}"
    );
    assert_eq!(after["payments"][0]["status"], "PAID", "{after}");
    assert_eq!(after["paymentStatus"], "PAID");
}

#[tokio::test]
async fn a_payment_stays_succeeded_after_an_earlier_decline_and_a_late_failure_event() {
    let stripe = MockServer::start().await;
    let app = spawn_app_with(|settings| settings.stripe_api_base = stripe.uri()).await;
    let shop = card_shop(&app, "late-failure").await;
    let token = shop.tenant.access_token.clone();
    let company = shop.tenant.company_id.clone();
    let order_id = order(&app, &shop).await;
    open_intents_as(&stripe, "pi_late").await;
    let payment = card_payment(&app, &token, &order_id, "card").await;

    for (id, kind, status) in [
        (
            "evt_1",
            "payment_intent.payment_failed",
            "requires_payment_method",
        ),
        ("evt_2", "payment_intent.succeeded", "succeeded"),
        (
            "evt_3",
            "payment_intent.payment_failed",
            "requires_payment_method",
        ),
    ] {
        let event = stripe_event(id, kind, intent("pi_late", status));
        let answer = post_stripe_event(&app, &company, WEBHOOK_SECRET, &event).await;
        assert_eq!(answer.status(), 200, "{kind}");
    }
    let after = payment_state(&app, &token, &payment).await;

    assert_eq!(after["status"], "PAID", "{after}");
}

#[tokio::test]
async fn a_second_payment_cannot_ask_again_for_what_an_open_one_covers() {
    let stripe = MockServer::start().await;
    let app = spawn_app_with(|settings| settings.stripe_api_base = stripe.uri()).await;
    let shop = card_shop(&app, "no-double").await;
    let token = shop.tenant.access_token.clone();
    let order_id = order(&app, &shop).await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(intent("pi_once", "requires_payment_method")),
        )
        .expect(1)
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents/pi_once/cancel"))
        .respond_with(ResponseTemplate::new(200).set_body_json(intent("pi_once", "canceled")))
        .expect(1)
        .mount(&stripe)
        .await;
    let first = card_payment(&app, &token, &order_id, "card-1").await;

    let again = create_payment(
        &app,
        &token,
        json!({ "orderId": order_id, "method": "CARD", "idempotencyKey": "card-2" }),
    )
    .await;
    let explicit = create_payment(
        &app,
        &token,
        json!({ "orderId": order_id, "method": "CASH", "amountMinor": 2500, "idempotencyKey": "cash-1" }),
    )
    .await;
    let cancelled = app
        .graphql_as(
            &token,
            "mutation X($id: ID!) { cancelPayment(id: $id) { status } }",
            json!({ "id": first }),
        )
        .await;
    let after_cancel = create_payment(
        &app,
        &token,
        json!({ "orderId": order_id, "method": "CASH", "idempotencyKey": "cash-2" }),
    )
    .await;

    assert_eq!(first_error_code(&again), "CONFLICT", "{again}");
    assert_eq!(first_error_code(&explicit), "CONFLICT", "{explicit}");
    assert_eq!(
        cancelled["data"]["cancelPayment"]["status"], "CANCELLED",
        "{cancelled}"
    );
    assert_eq!(
        after_cancel["data"]["createPayment"]["amount"]["amountMinor"], 2500,
        "{after_cancel}"
    );
}

#[tokio::test]
async fn while_part_is_asked_for_a_new_payment_may_ask_only_for_the_rest() {
    let app = spawn_app().await;
    let shop = shop(&app, "the-rest").await;
    let token = shop.tenant.access_token.clone();
    let order_id = order(&app, &shop).await;
    let part = create_payment(
        &app,
        &token,
        json!({ "orderId": order_id, "method": "CASH", "amountMinor": 1000, "idempotencyKey": "part" }),
    )
    .await;

    let too_much = create_payment(
        &app,
        &token,
        json!({ "orderId": order_id, "method": "CASH", "amountMinor": 1501, "idempotencyKey": "too-much" }),
    )
    .await;
    let rest = create_payment(
        &app,
        &token,
        json!({ "orderId": order_id, "method": "CASH", "idempotencyKey": "rest" }),
    )
    .await;
    let nothing_left = create_payment(
        &app,
        &token,
        json!({ "orderId": order_id, "method": "CASH", "amountMinor": 1, "idempotencyKey": "one-more" }),
    )
    .await;
    let after = balance(&app, &token, &order_id).await;

    assert_eq!(part["data"]["createPayment"]["status"], "PENDING", "{part}");
    assert_eq!(first_error_code(&too_much), "CONFLICT", "{too_much}");
    assert!(
        too_much["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1500"),
        "{too_much}"
    );
    assert_eq!(
        rest["data"]["createPayment"]["amount"]["amountMinor"], 1500,
        "{rest}"
    );
    assert_eq!(
        first_error_code(&nothing_left),
        "CONFLICT",
        "{nothing_left}"
    );
    assert_eq!(
        after["payments"].as_array().map(Vec::len),
        Some(2),
        "{after}"
    );
}

#[tokio::test]
async fn payments_racing_with_different_keys_ask_for_what_is_due_once() {
    let app = spawn_app().await;
    let shop = shop(&app, "racing-keys").await;
    let token = shop.tenant.access_token.clone();
    let order_id = order(&app, &shop).await;

    let attempts = (0..12).map(|attempt| {
        create_payment(
            &app,
            &token,
            json!({ "orderId": order_id, "method": "CASH", "idempotencyKey": format!("till-{attempt}") }),
        )
    });
    let answers = futures_util::future::join_all(attempts).await;
    let after = balance(&app, &token, &order_id).await;

    let created = answers
        .iter()
        .filter(|answer| answer["data"]["createPayment"]["id"].is_string())
        .count();
    let conflicts = answers
        .iter()
        .filter(|answer| answer["errors"][0]["extensions"]["code"] == "CONFLICT")
        .count();
    assert_eq!((created, conflicts), (1, 11), "{answers:?}");
    assert_eq!(
        after["payments"].as_array().map(Vec::len),
        Some(1),
        "{after}"
    );
}

#[tokio::test]
async fn a_refund_reported_before_the_payment_succeeded_ends_in_the_right_state() {
    let stripe = MockServer::start().await;
    let app = spawn_app_with(|settings| settings.stripe_api_base = stripe.uri()).await;
    let shop = card_shop(&app, "out-of-order").await;
    let token = shop.tenant.access_token.clone();
    let company = shop.tenant.company_id.clone();
    let (partly, fully, released) = (
        order(&app, &shop).await,
        order(&app, &shop).await,
        order(&app, &shop).await,
    );
    let intents = ["pi_partly", "pi_fully", "pi_released"];
    for id in intents {
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents"))
            .and(body_string_contains(format!(
                "metadata%5Border_id%5D={}",
                match id {
                    "pi_partly" => &partly,
                    "pi_fully" => &fully,
                    _ => &released,
                }
            )))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(intent(id, "requires_payment_method")),
            )
            .mount(&stripe)
            .await;
    }
    let partly_paid = card_payment(&app, &token, &partly, "partly").await;
    let fully_paid = card_payment(&app, &token, &fully, "fully").await;
    let released_payment = card_payment(&app, &token, &released, "released").await;
    let charge = |intent: &str, captured: bool, refunded: i64| {
        json!({ "id": format!("ch_{intent}"), "object": "charge", "payment_intent": intent,
            "amount": 2500, "captured": captured, "amount_refunded": refunded, "refunded": refunded == 2500,
            "refunds": { "object": "list", "data": [{ "id": format!("re_{intent}"), "object": "refund" }] } })
    };
    let events = [
        // Refunded in part, reported before the success.
        stripe_event("evt_a1", "charge.refunded", charge("pi_partly", true, 1000)),
        stripe_event(
            "evt_a2",
            "payment_intent.succeeded",
            intent("pi_partly", "succeeded"),
        ),
        // Refunded in full before both the authorization and the success are reported.
        stripe_event("evt_b1", "charge.refunded", charge("pi_fully", true, 2500)),
        stripe_event(
            "evt_b2",
            "payment_intent.amount_capturable_updated",
            intent("pi_fully", "requires_capture"),
        ),
        stripe_event(
            "evt_b3",
            "payment_intent.succeeded",
            intent("pi_fully", "succeeded"),
        ),
        // An authorization released, never captured: no money moved either way.
        stripe_event(
            "evt_c1",
            "payment_intent.amount_capturable_updated",
            intent("pi_released", "requires_capture"),
        ),
        stripe_event(
            "evt_c2",
            "charge.refunded",
            charge("pi_released", false, 2500),
        ),
        stripe_event(
            "evt_c3",
            "payment_intent.canceled",
            intent("pi_released", "canceled"),
        ),
    ];
    for event in &events {
        let answer = post_stripe_event(&app, &company, WEBHOOK_SECRET, event).await;
        assert_eq!(answer.status(), 200, "{event}");
    }
    let partly_state = payment_state(&app, &token, &partly_paid).await;
    let fully_state = payment_state(&app, &token, &fully_paid).await;
    let released_state = payment_state(&app, &token, &released_payment).await;
    let now = chrono::Utc::now();
    let summary = app
        .graphql_as(
            &token,
            "query F($from: DateTime!, $to: DateTime!) { financialSummary(from: $from, to: $to) { totals { grossMinor refundsMinor netMinor } } }",
            json!({ "from": (now - chrono::Duration::hours(1)).to_rfc3339(),
                "to": (now + chrono::Duration::hours(1)).to_rfc3339() }),
        )
        .await;

    assert_eq!(
        partly_state["status"], "PARTIALLY_REFUNDED",
        "{partly_state}"
    );
    assert_eq!(partly_state["refunded"]["amountMinor"], 1000);
    assert_eq!(
        partly_state["refunds"],
        json!([{ "status": "SUCCEEDED", "amount": { "amountMinor": 1000 } }])
    );
    assert_eq!(fully_state["status"], "REFUNDED", "{fully_state}");
    assert_eq!(fully_state["refunded"]["amountMinor"], 2500);
    assert_eq!(released_state["status"], "CANCELLED", "{released_state}");
    assert_eq!(released_state["refunded"]["amountMinor"], 0);
    assert_eq!(
        summary["data"]["financialSummary"]["totals"],
        json!({ "grossMinor": 5000, "refundsMinor": 3500, "netMinor": 1500 }),
        "each captured charge counted once, each refund once: {summary}"
    );
}

#[tokio::test]
async fn an_answer_from_stripe_that_cannot_be_read_leaves_the_card_payment_retryable() {
    let stripe = MockServer::start().await;
    let app = spawn_app_with(|settings| settings.stripe_api_base = stripe.uri()).await;
    let shop = card_shop(&app, "garbled").await;
    let token = shop.tenant.access_token.clone();
    let order_id = order(&app, &shop).await;
    // Stripe (or a proxy before it) answers the first request with something unreadable,
    // although the intent may well have been created; the retry gets the intent.
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>upstream hiccup</html>"))
        .up_to_n_times(1)
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(intent("pi_garbled", "requires_payment_method")),
        )
        .mount(&stripe)
        .await;
    let input = json!({ "orderId": order_id, "method": "CARD", "idempotencyKey": "card" });

    let first = create_payment(&app, &token, input.clone()).await;
    let meanwhile = balance(&app, &token, &order_id).await;
    let retried = create_payment(&app, &token, input).await;

    assert_eq!(
        first_error_code(&first),
        "PAYMENT_PROVIDER_ERROR",
        "{first}"
    );
    assert_eq!(
        first["errors"][0]["extensions"]["retryable"], true,
        "{first}"
    );
    assert_eq!(meanwhile["payments"][0]["status"], "PENDING", "{meanwhile}");
    let retried = &retried["data"]["createPayment"];
    assert_eq!(retried["status"], "PENDING", "{retried}");
    assert_eq!(retried["providerReference"], "pi_garbled");
    assert_eq!(retried["id"], meanwhile["payments"][0]["id"]);
    let keys: Vec<String> = stripe
        .received_requests()
        .await
        .expect("requests are recorded")
        .iter()
        .filter_map(|request| {
            request
                .headers
                .get("idempotency-key")
                .and_then(|value| value.to_str().ok())
                .map(String::from)
        })
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], keys[1], "the retry asks Stripe with the same key");
}

#[tokio::test]
async fn no_price_order_total_or_payment_goes_beyond_the_one_maximum() {
    let app = spawn_app().await;
    let shop = shop(&app, "maximum").await;
    let token = shop.tenant.access_token.clone();
    let max = api::domain::money::MAX_AMOUNT_MINOR;
    let product = |sku: &'static str, price: i64| {
        app.graphql_as(
            &token,
            "mutation P($input: CreateProductInput!) { createProduct(input: $input) { id } }",
            json!({ "input": { "sku": sku, "name": sku, "kind": "PRODUCT", "priceMinor": price } }),
        )
    };

    let too_dear = product("TOO-DEAR", max + 1).await;
    let dearest = product("DEAREST", max).await;
    let dearest = text(&dearest["data"]["createProduct"]["id"]);
    let repriced = app
        .graphql_as(
            &token,
            "mutation U($id: ID!, $price: Int!) { updateProduct(id: $id, input: { priceMinor: $price }) { id } }",
            json!({ "id": shop.product, "price": i64::MAX }),
        )
        .await;
    let two = app
        .create_order(&token, &shop.customer, &[(&dearest, 2)])
        .await;
    let one = app
        .create_order(&token, &shop.customer, &[(&dearest, 1)])
        .await;
    let one = text(&one["data"]["createOrder"]["id"]);
    let whole = create_payment(
        &app,
        &token,
        json!({ "orderId": one, "method": "CASH", "idempotencyKey": "whole" }),
    )
    .await;
    let tip_beyond = create_payment(
        &app,
        &token,
        json!({ "orderId": order(&app, &shop).await, "method": "CASH", "amountMinor": max + 1, "idempotencyKey": "beyond" }),
    )
    .await;

    assert_eq!(first_error_code(&too_dear), "VALIDATION", "{too_dear}");
    assert_eq!(first_error_code(&repriced), "VALIDATION", "{repriced}");
    assert_eq!(first_error_code(&two), "VALIDATION", "{two}");
    assert_eq!(
        whole["data"]["createPayment"]["amount"]["amountMinor"], max,
        "{whole}"
    );
    assert_eq!(first_error_code(&tip_beyond), "VALIDATION", "{tip_beyond}");
}

#[tokio::test]
async fn the_expiry_sweep_runs_as_a_recurring_job_once_a_minute() {
    use entity::{job_schedule, payment};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let app = spawn_app().await;
    let shop = shop(&app, "sweep").await;
    let token = shop.tenant.access_token.clone();
    settings(
        &app,
        &token,
        json!({ "pixKey": "caixa@sweep.test", "pixMerchantName": "Sweep", "pixMerchantCity": "Natal" }),
    )
    .await;
    let order_id = order(&app, &shop).await;
    let created = create_payment(
        &app,
        &token,
        json!({ "orderId": order_id, "method": "PIX", "amountMinor": 100, "idempotencyKey": "pix" }),
    )
    .await;
    let id = text(&created["data"]["createPayment"]["id"]);
    let schedule = job_schedule::Entity::find_by_id("payments.expire-overdue".to_string())
        .one(&app.db)
        .await
        .expect("a query")
        .expect("the server declared the sweep's schedule");
    let now = chrono::Utc::now();
    assert_eq!(schedule.cron, "* * * * *");
    assert!(
        schedule.next_run_at > now - chrono::Duration::seconds(5)
            && schedule.next_run_at <= now + chrono::Duration::minutes(1),
        "the next tick is within a minute: {schedule:?}"
    );

    // A day and an hour old, and the sweep's tick has come.
    payment::Entity::update_many()
        .col_expr(
            payment::Column::CreatedAt,
            Expr::value(now - chrono::Duration::hours(25)),
        )
        .filter(payment::Column::Id.eq(uuid::Uuid::parse_str(&id).expect("a uuid")))
        .exec(&app.db)
        .await
        .expect("backdated");
    job_schedule::Entity::update_many()
        .col_expr(
            job_schedule::Column::NextRunAt,
            Expr::value(now - chrono::Duration::seconds(1)),
        )
        .filter(job_schedule::Column::Name.eq("payments.expire-overdue"))
        .exec(&app.db)
        .await
        .expect("tick due");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let statuses = balance(&app, &token, &order_id).await["payments"].clone();
        if statuses == json!([{ "id": id, "status": "EXPIRED" }]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{statuses}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let moved_on = job_schedule::Entity::find_by_id("payments.expire-overdue".to_string())
        .one(&app.db)
        .await
        .expect("a query")
        .expect("the schedule");
    assert!(moved_on.next_run_at > now, "{moved_on:?}");
}
