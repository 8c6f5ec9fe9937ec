//! Customers and products: parsing, uniqueness, pagination, archiving.

use serde_json::json;

use crate::helpers::{first_error_code, spawn_app, text};

#[tokio::test]
async fn customer_details_are_parsed_and_normalised() {
    let app = spawn_app().await;
    let tenant = app.sign_up("customers-co", "GENERIC").await;
    let create = "mutation C($input: CreateCustomerInput!) { createCustomer(input: $input) {
        id name email phone document } }";

    let created = app
        .graphql_as(
            &tenant.access_token,
            create,
            json!({ "input": { "name": " Ana Souza ", "email": "Ana@Example.com",
                "phone": "+55 (11) 98765-4321", "document": "52998224725" } }),
        )
        .await;
    let cases = [
        ("email", json!("nope"), "input.email"),
        ("phone", json!("11 98765-4321"), "input.phone"),
        ("document", json!("529.982.247-24"), "input.document"),
        ("name", json!("  "), "input.name"),
    ];

    assert_eq!(
        created["data"]["createCustomer"],
        json!({ "id": created["data"]["createCustomer"]["id"], "name": "Ana Souza",
            "email": "ana@example.com", "phone": "+5511987654321", "document": "529.982.247-25" }),
        "{created}"
    );
    for (key, value, field) in cases {
        let mut input = json!({ "name": "Bruno" });
        input[key] = value;
        let body = app
            .graphql_as(&tenant.access_token, create, json!({ "input": input }))
            .await;
        assert_eq!(first_error_code(&body), "VALIDATION", "{key}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{key}");
    }
}

#[tokio::test]
async fn customers_page_by_cursor_and_archived_ones_leave_the_list() {
    let app = spawn_app().await;
    let tenant = app.sign_up("paging-co", "GENERIC").await;
    let mut created = Vec::new();
    for index in 0..5 {
        created.push(
            app.create_customer(&tenant.access_token, &format!("Customer {index}"))
                .await,
        );
    }
    let page = "query P($after: String) { customers(first: 2, after: $after) { id cursor } }";

    let mut seen = Vec::new();
    let mut after = serde_json::Value::Null;
    loop {
        let body = app
            .graphql_as(&tenant.access_token, page, json!({ "after": after }))
            .await;
        let customers = body["data"]["customers"].as_array().expect("list").clone();
        if customers.is_empty() {
            break;
        }
        seen.extend(customers.iter().map(|customer| text(&customer["id"])));
        after = customers.last().expect("non-empty")["cursor"].clone();
    }
    app.graphql_as(
        &tenant.access_token,
        "mutation A($id: ID!) { archiveCustomer(id: $id) { archived } }",
        json!({ "id": created[0] }),
    )
    .await;
    let remaining = app
        .graphql_as(&tenant.access_token, "{ customers { id } }", json!({}))
        .await;

    assert_eq!(seen, created);
    assert_eq!(
        remaining["data"]["customers"].as_array().map(Vec::len),
        Some(4)
    );
}

#[tokio::test]
async fn skus_are_unique_per_company_and_prices_are_money() {
    let app = spawn_app().await;
    let a = app.sign_up("sku-a", "RESTAURANT").await;
    let b = app.sign_up("sku-b", "RESTAURANT").await;
    app.create_product(&a.access_token, "PIZZA-1", 4590, None)
        .await;

    let duplicate = app
        .graphql_as(
            &a.access_token,
            "mutation { createProduct(input: { sku: \"PIZZA-1\", name: \"Again\", kind: PRODUCT, priceMinor: 1 }) { id } }",
            json!({}),
        )
        .await;
    app.create_product(&b.access_token, "PIZZA-1", 100, None)
        .await;
    let listed = app
        .graphql_as(
            &a.access_token,
            "{ products { sku price { amountMinor currency formatted } } }",
            json!({}),
        )
        .await;
    let negative = app
        .graphql_as(
            &a.access_token,
            "mutation { createProduct(input: { sku: \"NEG\", name: \"Neg\", kind: PRODUCT, priceMinor: -1 }) { id } }",
            json!({}),
        )
        .await;
    let stocked_service = app
        .graphql_as(
            &a.access_token,
            "mutation { createProduct(input: { sku: \"SVC\", name: \"Svc\", kind: SERVICE, priceMinor: 1, trackStock: true }) { id } }",
            json!({}),
        )
        .await;

    assert_eq!(
        duplicate["errors"][0]["extensions"]["field"], "input.sku",
        "{duplicate}"
    );
    assert_eq!(
        listed["data"]["products"],
        json!([{ "sku": "PIZZA-1", "price": { "amountMinor": 4590, "currency": "BRL", "formatted": "R$ 45,90" } }])
    );
    assert_eq!(
        negative["errors"][0]["extensions"]["field"],
        "input.priceMinor"
    );
    assert_eq!(
        stocked_service["errors"][0]["extensions"]["field"],
        "input.trackStock"
    );
}

#[tokio::test]
async fn kitchen_staff_cannot_change_the_catalog() {
    let app = spawn_app().await;
    let tenant = app.sign_up("menu-co", "RESTAURANT").await;
    app.invite(&tenant.access_token, "cook@menu-co.test", &["KITCHEN"])
        .await;
    let cook = app.login("cook@menu-co.test", None).await;

    let body = app
        .graphql_as(
            &cook,
            "mutation { createProduct(input: { sku: \"X\", name: \"X\", kind: PRODUCT, priceMinor: 1 }) { id } }",
            json!({}),
        )
        .await;
    let readable = app
        .graphql_as(&cook, "{ products { id } }", json!({}))
        .await;

    assert_eq!(first_error_code(&body), "FORBIDDEN");
    assert!(readable["data"]["products"].is_array(), "{readable}");
}

#[tokio::test]
async fn the_currency_cannot_change_under_existing_prices() {
    let app = spawn_app().await;
    let tenant = app.sign_up("priced", "GENERIC").await;
    app.create_product(&tenant.access_token, "P", 100, None)
        .await;

    let body = app
        .graphql_as(
            &tenant.access_token,
            "mutation { updateCompany(input: { currency: \"USD\" }) { currency } }",
            json!({}),
        )
        .await;

    assert_eq!(
        body["errors"][0]["extensions"]["field"], "input.currency",
        "{body}"
    );
}
