//! Orders end to end: the three business templates, rejected transitions, stock, concurrency,
//! filters and pagination, and the constant number of SQL statements per page.

use serde_json::{Value, json};

use crate::helpers::{TestApp, first_error_code, spawn_app, text};

const ORDER: &str = "query O($id: ID!) { order(id: $id) { number status version
    total { amountMinor } customer { name }
    items { quantity unitPrice { amountMinor } lineTotal { amountMinor } product { sku } }
    history { from to comment actor { email } }
    availableTransitions { to }
    workflow { name version } } }";

struct Shop {
    token: String,
    customer: String,
    product: String,
}

async fn shop(app: &TestApp, slug: &str, business_type: &str) -> Shop {
    let tenant = app.sign_up(slug, business_type).await;
    let customer = app.create_customer(&tenant.access_token, "Maria").await;
    let product = app
        .create_product(&tenant.access_token, "ITEM", 1250, None)
        .await;
    Shop {
        token: tenant.access_token,
        customer,
        product,
    }
}

async fn new_order(app: &TestApp, shop: &Shop) -> (String, i64) {
    let created = app
        .create_order(&shop.token, &shop.customer, &[(&shop.product, 2)])
        .await;
    let order = &created["data"]["createOrder"];
    assert!(order.is_object(), "createOrder: {created}");
    (
        text(&order["id"]),
        order["version"].as_i64().expect("version"),
    )
}

/// Walks `path` as the shop's admin and checks the history is exactly that path.
async fn walk(app: &TestApp, shop: &Shop, path: &[&str]) {
    let (order, _) = new_order(app, shop).await;
    for to in &path[1..] {
        // The bike shop hands the bike back only once the repair is paid.
        if *to == "COMPLETED" && path.contains(&"READY_FOR_PICKUP") {
            crate::payments::pay_cash(app, &shop.token, &order, None, "at-pickup").await;
        }
        let moved = app.transition(&shop.token, &order, to, None).await;
        assert_eq!(moved["data"]["transitionOrder"]["status"], *to, "{moved}");
    }
    let body = app
        .graphql_as(&shop.token, ORDER, json!({ "id": order }))
        .await;
    let history: Vec<(Value, Value)> = body["data"]["order"]["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|change| (change["from"].clone(), change["to"].clone()))
        .collect();
    let expected: Vec<(Value, Value)> = path
        .iter()
        .enumerate()
        .map(|(index, to)| {
            let from = if index == 0 {
                Value::Null
            } else {
                json!(path[index - 1])
            };
            (from, json!(to))
        })
        .collect();
    assert_eq!(history, expected);
    assert_eq!(
        body["data"]["order"]["availableTransitions"],
        json!([]),
        "terminal"
    );
}

#[tokio::test]
async fn the_three_business_templates_run_end_to_end() {
    let app = spawn_app().await;
    let cases = [
        (
            "restaurant",
            "RESTAURANT",
            vec!["PENDING", "CONFIRMED", "PREPARING", "READY", "DELIVERED"],
        ),
        (
            "bikes",
            "BIKE_SHOP",
            vec![
                "QUOTE_REQUESTED",
                "QUOTE_SENT",
                "QUOTE_APPROVED",
                "IN_PROGRESS",
                "READY_FOR_PICKUP",
                "COMPLETED",
            ],
        ),
        (
            "clinic",
            "CLINIC",
            vec![
                "SCHEDULED",
                "CONFIRMED",
                "CHECKED_IN",
                "IN_CONSULTATION",
                "COMPLETED",
            ],
        ),
        (
            "pets",
            "PET_STORE",
            vec!["PENDING", "CONFIRMED", "READY", "DELIVERED"],
        ),
        ("generic", "GENERIC", vec!["OPEN", "IN_PROGRESS", "DONE"]),
    ];
    for (slug, business_type, path) in cases {
        let shop = shop(&app, slug, business_type).await;
        walk(&app, &shop, &path).await;
    }
}

#[tokio::test]
async fn an_order_copies_prices_computes_totals_and_numbers_itself() {
    let app = spawn_app().await;
    let shop = shop(&app, "totals", "RESTAURANT").await;
    let second = app.create_product(&shop.token, "SODA", 700, None).await;

    let first = app
        .create_order(
            &shop.token,
            &shop.customer,
            &[(&shop.product, 2), (&second, 3)],
        )
        .await;
    let id = text(&first["data"]["createOrder"]["id"]);
    app.graphql_as(
        &shop.token,
        "mutation U($id: ID!) { updateProduct(id: $id, input: { priceMinor: 99999 }) { id } }",
        json!({ "id": shop.product }),
    )
    .await;
    let next = app
        .create_order(&shop.token, &shop.customer, &[(&second, 1)])
        .await;
    let body = app
        .graphql_as(&shop.token, ORDER, json!({ "id": id }))
        .await;
    let order = &body["data"]["order"];

    assert_eq!(first["data"]["createOrder"]["number"], 1);
    assert_eq!(next["data"]["createOrder"]["number"], 2);
    assert_eq!(
        first["data"]["createOrder"]["total"],
        json!({ "amountMinor": 4600, "currency": "BRL", "formatted": "R$ 46,00" })
    );
    assert_eq!(
        order["items"][0]["unitPrice"]["amountMinor"], 1250,
        "price kept: {body}"
    );
    assert_eq!(order["items"][0]["lineTotal"]["amountMinor"], 2500);
    assert_eq!(order["items"][1]["lineTotal"]["amountMinor"], 2100);
    assert_eq!(order["customer"]["name"], "Maria");
    assert_eq!(order["history"][0]["actor"]["email"], "admin@totals.test");
    assert_eq!(
        order["workflow"],
        json!({ "name": "Restaurant order", "version": 1 })
    );
}

#[tokio::test]
async fn rejected_transitions_say_why() {
    let app = spawn_app().await;
    let shop = shop(&app, "rejects", "RESTAURANT").await;
    app.invite(&shop.token, "cook@rejects.test", &["KITCHEN"])
        .await;
    let cook = app.login("cook@rejects.test", None).await;
    let (order, version) = new_order(&app, &shop).await;

    let skipping = app.transition(&shop.token, &order, "READY", None).await;
    let unknown = app.transition(&shop.token, &order, "FLYING", None).await;
    let wrong_role = app.transition(&cook, &order, "CONFIRMED", None).await;
    let confirmed = app
        .transition(&shop.token, &order, "CONFIRMED", Some(version))
        .await;
    let stale = app
        .transition(&shop.token, &order, "CANCELLED", Some(version))
        .await;
    let by_kitchen = app.transition(&cook, &order, "PREPARING", None).await;
    app.transition(&shop.token, &order, "CANCELLED", None).await;
    let after_terminal = app.transition(&shop.token, &order, "PENDING", None).await;
    let available = app.graphql_as(&cook, ORDER, json!({ "id": order })).await;

    assert_eq!(first_error_code(&skipping), "VALIDATION");
    assert!(
        skipping["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("CONFIRMED"),
        "{skipping}"
    );
    assert_eq!(first_error_code(&unknown), "VALIDATION");
    assert_eq!(first_error_code(&wrong_role), "FORBIDDEN", "{wrong_role}");
    assert_eq!(confirmed["data"]["transitionOrder"]["version"], version + 1);
    assert_eq!(first_error_code(&stale), "CONFLICT", "{stale}");
    assert_eq!(
        by_kitchen["data"]["transitionOrder"]["status"], "PREPARING",
        "{by_kitchen}"
    );
    assert_eq!(first_error_code(&after_terminal), "VALIDATION");
    assert_eq!(
        available["data"]["order"]["availableTransitions"],
        json!([])
    );
}

#[tokio::test]
async fn available_transitions_are_only_those_the_actor_may_take() {
    let app = spawn_app().await;
    let shop = shop(&app, "choices", "RESTAURANT").await;
    app.invite(&shop.token, "cook@choices.test", &["KITCHEN"])
        .await;
    let cook = app.login("cook@choices.test", None).await;
    let (order, _) = new_order(&app, &shop).await;
    app.transition(&shop.token, &order, "CONFIRMED", None).await;

    let as_admin = app
        .graphql_as(&shop.token, ORDER, json!({ "id": order }))
        .await;
    let as_cook = app.graphql_as(&cook, ORDER, json!({ "id": order })).await;

    assert_eq!(
        as_admin["data"]["order"]["availableTransitions"],
        json!([{ "to": "PREPARING" }, { "to": "CANCELLED" }])
    );
    assert_eq!(
        as_cook["data"]["order"]["availableTransitions"],
        json!([{ "to": "PREPARING" }])
    );
}

async fn stock_of(app: &TestApp, token: &str, product: &str) -> Option<i64> {
    app.graphql_as(
        token,
        "query S($id: ID!) { product(id: $id) { stock } }",
        json!({ "id": product }),
    )
    .await["data"]["product"]["stock"]
        .as_i64()
}

#[tokio::test]
async fn stock_is_reserved_refused_when_short_and_released_on_cancel() {
    let app = spawn_app().await;
    let shop = shop(&app, "stock", "RESTAURANT").await;
    let bread = app.create_product(&shop.token, "BREAD", 500, Some(5)).await;
    let first = app
        .create_order(&shop.token, &shop.customer, &[(&bread, 3)])
        .await;
    let after_first = stock_of(&app, &shop.token, &bread).await;
    let short = app
        .create_order(
            &shop.token,
            &shop.customer,
            &[(&shop.product, 1), (&bread, 3)],
        )
        .await;
    let orders = app
        .graphql_as(&shop.token, "{ orders { totalCount } }", json!({}))
        .await;
    let after_short = stock_of(&app, &shop.token, &bread).await;
    app.transition(
        &shop.token,
        &text(&first["data"]["createOrder"]["id"]),
        "CANCELLED",
        None,
    )
    .await;
    let after_cancel = stock_of(&app, &shop.token, &bread).await;

    assert_eq!(after_first, Some(2));
    assert_eq!(first_error_code(&short), "VALIDATION");
    assert!(
        short["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("BREAD"),
        "{short}"
    );
    assert_eq!(
        orders["data"]["orders"]["totalCount"], 1,
        "nothing written: {orders}"
    );
    assert_eq!(after_short, Some(2));
    assert_eq!(after_cancel, Some(5));
}

const PAGE: &str = "query Page($first: Int) { orders(first: $first) { edges { node {
    number customer { name } items { quantity product { name } } history { from to actor { name } } } } } }";

/// Creates `count` orders of three items with three history rows each.
async fn busy_shop(app: &TestApp, slug: &str, count: usize) -> Shop {
    let shop = shop(app, slug, "RESTAURANT").await;
    let extra = app.create_product(&shop.token, "EXTRA", 300, None).await;
    let third = app.create_product(&shop.token, "THIRD", 400, None).await;
    for index in 0..count {
        let customer = app
            .create_customer(&shop.token, &format!("Customer {index}"))
            .await;
        let created = app
            .create_order(
                &shop.token,
                &customer,
                &[(&shop.product, 1), (&extra, 2), (&third, 3)],
            )
            .await;
        let id = text(&created["data"]["createOrder"]["id"]);
        app.transition(&shop.token, &id, "CONFIRMED", None).await;
        app.transition(&shop.token, &id, "PREPARING", None).await;
    }
    shop
}

async fn statements_for_page(app: &TestApp, shop: &Shop, first: i64) -> (u64, Vec<Value>) {
    let before = app.statement_count();
    let body = app
        .graphql_as(&shop.token, PAGE, json!({ "first": first }))
        .await;
    let after = app.statement_count();
    assert!(body.get("errors").is_none(), "{body}");
    let nodes = body["data"]["orders"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"].clone())
        .collect();
    (after - before, nodes)
}

#[tokio::test]
async fn a_page_of_orders_costs_a_constant_number_of_statements() {
    let app = spawn_app().await;
    let shop = busy_shop(&app, "counted", 20).await;

    let (small, small_page) = statements_for_page(&app, &shop, 2).await;
    let (large, large_page) = statements_for_page(&app, &shop, 20).await;

    assert_eq!((small_page.len(), large_page.len()), (2, 20));
    // Fetched per page, every order still gets its own customer, items and history.
    for node in &large_page {
        let number = node["number"].as_i64().expect("number");
        assert_eq!(node["customer"]["name"], format!("Customer {}", number - 1));
        let items: Vec<(Value, Value)> = node["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| (item["quantity"].clone(), item["product"]["name"].clone()))
            .collect();
        assert_eq!(
            items,
            [
                (json!(1), json!("Product ITEM")),
                (json!(2), json!("Product EXTRA")),
                (json!(3), json!("Product THIRD")),
            ]
        );
        let statuses: Vec<&Value> = node["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|change| &change["to"])
            .collect();
        assert_eq!(
            statuses,
            [&json!("PENDING"), &json!("CONFIRMED"), &json!("PREPARING")]
        );
        assert_eq!(node["history"][2]["actor"]["name"], "Admin");
    }
    assert_eq!(small, large, "the statement count grew with the page size");
    // The page, one batch each for customers, items, products, history and users, and the
    // member's state when authentication does not have it cached.
    assert!(large <= 7, "{large} statements for one page");
}

#[tokio::test]
async fn orders_filter_search_and_page_without_gaps() {
    let app = spawn_app().await;
    let shop = shop(&app, "filters", "RESTAURANT").await;
    let bruno = app.create_customer(&shop.token, "Bruno Lima").await;
    let mut ids = Vec::new();
    for index in 0..7 {
        let customer = if index % 3 == 0 {
            &bruno
        } else {
            &shop.customer
        };
        let created = app
            .create_order(&shop.token, customer, &[(&shop.product, index + 1)])
            .await;
        ids.push(text(&created["data"]["createOrder"]["id"]));
    }
    app.transition(&shop.token, &ids[0], "CONFIRMED", None)
        .await;
    app.transition(&shop.token, &ids[1], "CONFIRMED", None)
        .await;
    let query = "query Q($first: Int, $after: String, $filter: OrderFilter, $orderBy: OrderBy) {
        orders(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
            totalCount edges { cursor node { number } } pageInfo { hasNextPage endCursor } } }";
    let numbers = |body: &Value| -> Vec<i64> {
        body["data"]["orders"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|edge| edge["node"]["number"].as_i64().expect("number"))
            .collect()
    };

    let confirmed = app
        .graphql_as(
            &shop.token,
            query,
            json!({ "filter": { "status": ["CONFIRMED"] } }),
        )
        .await;
    let by_customer = app
        .graphql_as(
            &shop.token,
            query,
            json!({ "filter": { "customerId": bruno } }),
        )
        .await;
    let by_name = app
        .graphql_as(
            &shop.token,
            query,
            json!({ "filter": { "search": "bruno" } }),
        )
        .await;
    let by_number = app
        .graphql_as(&shop.token, query, json!({ "filter": { "search": "#5" } }))
        .await;
    let by_total = app
        .graphql_as(
            &shop.token,
            query,
            json!({ "first": 3, "orderBy": "TOTAL_DESC" }),
        )
        .await;
    let mut pages = Vec::new();
    let mut after = Value::Null;
    loop {
        let body = app
            .graphql_as(&shop.token, query, json!({ "first": 3, "after": after }))
            .await;
        pages.extend(numbers(&body));
        if body["data"]["orders"]["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = body["data"]["orders"]["pageInfo"]["endCursor"].clone();
    }
    let too_many = app
        .graphql_as(&shop.token, query, json!({ "first": 1000 }))
        .await;

    assert_eq!(numbers(&confirmed), [2, 1]);
    assert_eq!(confirmed["data"]["orders"]["totalCount"], 2);
    assert_eq!(numbers(&by_customer), [7, 4, 1]);
    assert_eq!(numbers(&by_name), [7, 4, 1]);
    assert_eq!(numbers(&by_number), [5]);
    assert_eq!(numbers(&by_total), [7, 6, 5]);
    assert_eq!(pages, [7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(numbers(&too_many).len(), 7, "first is capped, not refused");
}

#[tokio::test]
async fn kitchen_sees_orders_but_not_customer_contacts_or_members() {
    let app = spawn_app().await;
    let shop = shop(&app, "privacy", "RESTAURANT").await;
    app.graphql_as(
        &shop.token,
        "mutation U($id: ID!) { updateCustomer(id: $id, input: { email: \"maria@x.test\", phone: \"+5511912345678\" }) { id } }",
        json!({ "id": shop.customer }),
    )
    .await;
    let (order, _) = new_order(&app, &shop).await;
    app.invite(&shop.token, "cook@privacy.test", &["KITCHEN"])
        .await;
    let cook = app.login("cook@privacy.test", None).await;
    let query =
        "query O($id: ID!) { order(id: $id) { customer { name } history { actor { email } } } }";
    let contacts = "query O($id: ID!) { order(id: $id) { customer { email phone } } }";

    let as_cook = app.graphql_as(&cook, query, json!({ "id": order })).await;
    let cook_contacts = app
        .graphql_as(&cook, contacts, json!({ "id": order }))
        .await;
    let admin_contacts = app
        .graphql_as(&shop.token, contacts, json!({ "id": order }))
        .await;

    assert_eq!(
        as_cook["data"]["order"]["customer"]["name"], "Maria",
        "{as_cook}"
    );
    assert_eq!(as_cook["data"]["order"]["history"][0]["actor"], Value::Null);
    assert_eq!(
        first_error_code(&cook_contacts),
        "FORBIDDEN",
        "{cook_contacts}"
    );
    assert_eq!(
        admin_contacts["data"]["order"]["customer"]["email"],
        "maria@x.test"
    );
}

#[tokio::test]
async fn an_api_key_loses_its_role_when_its_creator_does() {
    let app = spawn_app().await;
    let shop = shop(&app, "key-roles", "RESTAURANT").await;
    app.graphql_as(
        &shop.token,
        "mutation { createRole(name: \"INTEGRATOR\", permissions: [{ resource: \"api_keys\", action: \"manage\" }]) { name } }",
        json!({}),
    )
    .await;
    let member = app
        .invite(
            &shop.token,
            "int@key-roles.test",
            &["INTEGRATOR", "KITCHEN"],
        )
        .await;
    let integrator = app.login("int@key-roles.test", None).await;
    let key = app
        .graphql_as(
            &integrator,
            "mutation { createApiKey(name: \"kds\", role: \"KITCHEN\") { secret } }",
            json!({}),
        )
        .await;
    let key = text(&key["data"]["createApiKey"]["secret"]);
    let (first, _) = new_order(&app, &shop).await;
    let (second, _) = new_order(&app, &shop).await;
    app.transition(&shop.token, &first, "CONFIRMED", None).await;
    app.transition(&shop.token, &second, "CONFIRMED", None)
        .await;

    let while_held = app.transition(&key, &first, "PREPARING", None).await;
    app.graphql_as(
        &shop.token,
        "mutation R($id: ID!) { revokeRole(userId: $id, role: \"KITCHEN\") { roles } }",
        json!({ "id": member }),
    )
    .await;
    let after_revoke = app.transition(&key, &second, "PREPARING", None).await;

    assert_eq!(
        while_held["data"]["transitionOrder"]["status"], "PREPARING",
        "{while_held}"
    );
    assert_eq!(
        first_error_code(&after_revoke),
        "FORBIDDEN",
        "{after_revoke}"
    );
}

/// Every column of every table a list page reads, with and without NULLs, as sea-orm reads it.
#[tokio::test]
async fn rows_read_by_position_are_the_rows_sea_orm_reads() {
    use std::{fmt::Debug, sync::atomic::AtomicU64};

    use api::db::{
        rows::{Positional, Reader},
        tenant::CompanyId,
    };
    use entity::{customer, order, order_item, order_status_history, product};
    use sea_orm::{EntityTrait, QueryOrder, sea_query::Expr};

    let app = spawn_app().await;
    let shop = busy_shop(&app, "positional", 2).await;
    let full = app
        .graphql_as(
            &shop.token,
            "mutation { createCustomer(input: { name: \"Ana Souza\", email: \"ana@example.com\",
                phone: \"+55 11 98765-4321\", document: \"529.982.247-25\", address: \"Rua A, 1\",
                notes: \"regular\" }) { id } }",
            json!({}),
        )
        .await;
    let full = text(&full["data"]["createCustomer"]["id"]);
    app.graphql_as(
        &shop.token,
        "mutation A($id: ID!) { archiveCustomer(id: $id) { id } }",
        json!({ "id": full }),
    )
    .await;
    let tracked = app
        .create_product(&shop.token, "TRACKED", 700, Some(5))
        .await;
    let (order, _) = new_order(&app, &shop).await;
    let cancelled = app
        .graphql_as(
            &shop.token,
            "mutation T($id: ID!) { transitionOrder(input: { orderId: $id, to: \"CANCELLED\",
                comment: \"changed mind\" }) { status } }",
            json!({ "id": order }),
        )
        .await;
    assert_eq!(
        cancelled["data"]["transitionOrder"]["status"], "CANCELLED",
        "{cancelled}"
    );
    let noted = app
        .graphql_as(
            &shop.token,
            "mutation O($customer: ID!, $product: ID!) { createOrder(input: { customerId: $customer,
                items: [{ productId: $product, quantity: 2 }], notes: \"ring twice\" }) { id } }",
            json!({ "customer": shop.customer, "product": tracked }),
        )
        .await;
    assert!(noted["data"]["createOrder"]["id"].is_string(), "{noted}");

    // The shop is the database's only company: the reader's rows are all of them.
    let company = order::Entity::find()
        .one(&app.db)
        .await
        .expect("an order")
        .expect("the shop has orders")
        .company_id;
    async fn same_rows<M>(app: &TestApp, company: uuid::Uuid)
    where
        M: Positional + PartialEq + Debug + sea_orm::FromQueryResult,
        M::Entity: EntityTrait<Model = M>,
    {
        let by_id = || M::Entity::find().order_by_asc(Expr::col("id"));
        let expected = by_id().all(&app.db).await.expect("sea-orm read");
        let statements = AtomicU64::new(0);
        let reader = Reader::acquire(&app.reads, CompanyId::from_row(company), &statements)
            .await
            .expect("a connection");
        let actual: Vec<M> = reader.all(by_id()).await.expect("read by position");
        assert!(!expected.is_empty());
        assert_eq!(actual, expected);
    }
    same_rows::<order::Model>(&app, company).await;
    same_rows::<customer::Model>(&app, company).await;
    same_rows::<order_item::Model>(&app, company).await;
    same_rows::<product::Model>(&app, company).await;
    same_rows::<order_status_history::Model>(&app, company).await;
}

/// The list pages' own connections (tokio-postgres, for pipelining) reach the same database as
/// the rest of the server, with the same user, role, TLS and session settings.
#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn list_reads_connect_as_the_rest_of_the_server() {
    use api::db::rows::ReadPool;
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    let app = spawn_app().await;
    let ReadPool::Postgres(pool) = &app.reads else {
        panic!("needs TEST_DATABASE_URL: SQLite's list reads take the server's own pool");
    };
    const SESSION: &str = "SELECT current_database()::text, session_user::text,
        current_user::text, current_setting('plan_cache_mode'), pg_backend_pid()";
    let server = app
        .request_db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, SESSION))
        .await
        .expect("the server's pool answers")
        .expect("a row");
    let reads = pool
        .get()
        .await
        .expect("a read connection")
        .query_one(SESSION, &[])
        .await
        .expect("the read pool answers");
    let (server, server_pid): ((String, String, String, String), i32) = (
        (
            server.try_get_by_index(0).expect("database"),
            server.try_get_by_index(1).expect("login"),
            server.try_get_by_index(2).expect("role"),
            server.try_get_by_index(3).expect("plan_cache_mode"),
        ),
        server.try_get_by_index(4).expect("pid"),
    );
    let (reads, reads_pid): ((String, String, String, String), i32) = (
        (reads.get(0), reads.get(1), reads.get(2), reads.get(3)),
        reads.get(4),
    );

    assert_eq!(reads, server);
    assert_eq!(reads.3, "force_generic_plan");
    // Another role's sessions show no TLS details to the server's role; the owner sees both.
    let owner = sea_orm::Database::connect(app.settings.database_url())
        .await
        .expect("the owner connects");
    let tls = owner
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT ssl FROM pg_stat_ssl WHERE pid IN ({server_pid}, {reads_pid})"),
        ))
        .await
        .expect("the sessions' TLS")
        .iter()
        .map(|row| row.try_get_by_index(0).expect("ssl"))
        .collect::<Vec<bool>>();
    assert_eq!(tls.len(), 2);
    assert_eq!(tls[0], tls[1]);
    owner.close().await.ok();
}
