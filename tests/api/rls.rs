//! Row-level security on PostgreSQL, the database's wall between companies behind the
//! application's: what the schema declares, what the server's roles may do, and that the list
//! reads and the order list answer through it. SQLite has no such wall; these tests need
//! `TEST_DATABASE_URL`.

use std::sync::atomic::AtomicU64;

use api::db::{
    rows::{ReadPool, Reader},
    tenant::CompanyId,
};
use chrono::Utc;
use entity::{company, customer};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbBackend,
    EntityTrait, QueryResult, Statement, TransactionTrait,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, require_postgres, spawn_app, text};

/// Tables with a `company_id` that are not behind the policy, and why: a job need not act for a
/// company (its `company_id` is nullable), and only the cross-tenant job runtime reads them.
const EXEMPT: [&str; 2] = ["jobs", "job_schedules"];

async fn postgres_app() -> TestApp {
    require_postgres();
    let app = spawn_app().await;
    assert_eq!(app.db.get_database_backend(), DbBackend::Postgres);
    app
}

async fn rows(db: &impl ConnectionTrait, sql: &str) -> Vec<QueryResult> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

async fn count(db: &impl ConnectionTrait, sql: &str) -> i64 {
    rows(db, sql).await[0].try_get_by_index(0).expect("a count")
}

/// A company with one customer, written through the cross-tenant pool.
async fn company_with_customer(app: &TestApp, slug: &str) -> (Uuid, Uuid) {
    let now = Utc::now();
    let company = company::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(format!("Company {slug}")),
        slug: Set(slug.into()),
        business_type: Set("RESTAURANT".into()),
        locale: Set("pt-BR".into()),
        timezone: Set("America/Sao_Paulo".into()),
        currency: Set("BRL".into()),
        status: Set("ACTIVE".into()),
        api_rate_limit: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&app.db)
    .await
    .expect("a company");
    let customer = new_customer(company.id, &format!("Customer of {slug}"))
        .insert(&app.db)
        .await
        .expect("a customer");
    (company.id, customer.id)
}

fn new_customer(company: Uuid, name: &str) -> customer::ActiveModel {
    let now = Utc::now();
    customer::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(company),
        name: Set(name.into()),
        email: Set(None),
        phone: Set(None),
        document: Set(None),
        address: Set(None),
        notes: Set(None),
        archived_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// The tables of the schema with a `company_id` column, with whether row-level security is
/// enabled and forced, and their policies' `USING` and `WITH CHECK` expressions.
async fn tenant_tables(
    db: &DatabaseConnection,
) -> Vec<(String, bool, bool, Vec<(String, String)>)> {
    let tables = rows(
        db,
        "SELECT c.oid::int8, c.relname::text, c.relrowsecurity, c.relforcerowsecurity
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'company_id' AND NOT a.attisdropped
         WHERE c.relkind IN ('r', 'p')
         ORDER BY c.relname",
    )
    .await;
    let mut found = Vec::new();
    for table in tables {
        let oid: i64 = table.try_get_by_index(0).expect("oid");
        let policies = rows(
            db,
            &format!(
                "SELECT coalesce(pg_get_expr(polqual, polrelid), ''),
                        coalesce(pg_get_expr(polwithcheck, polrelid), '')
                 FROM pg_policy WHERE polrelid = {oid}"
            ),
        )
        .await
        .iter()
        .map(|policy| {
            (
                policy.try_get_by_index(0).expect("using"),
                policy.try_get_by_index(1).expect("with check"),
            )
        })
        .collect();
        found.push((
            table.try_get_by_index(1).expect("name"),
            table.try_get_by_index(2).expect("enabled"),
            table.try_get_by_index(3).expect("forced"),
            policies,
        ));
    }
    found
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn every_table_with_a_company_is_behind_the_tenant_policy() {
    let app = postgres_app().await;
    let tables = tenant_tables(&app.db).await;
    let names: Vec<&str> = tables.iter().map(|(name, ..)| name.as_str()).collect();
    for table in ["orders", "customers", "outbox", "memberships", "payments"]
        .iter()
        .chain(&EXEMPT)
    {
        assert!(names.contains(table), "{table} not among {names:?}");
    }

    let compares_with_the_setting = |expression: &str| {
        expression.contains("company_id = ") && expression.contains("'app.company_id'")
    };
    let unprotected: Vec<_> = tables
        .iter()
        .filter(|(name, ..)| !EXEMPT.contains(&name.as_str()))
        .filter(|(_, enabled, forced, policies)| {
            !(*enabled
                && *forced
                && !policies.is_empty()
                && policies.iter().all(|(using, check)| {
                    compares_with_the_setting(using) && compares_with_the_setting(check)
                }))
        })
        .collect();
    assert!(
        unprotected.is_empty(),
        "tenant tables without an enabled, forced policy on app.company_id (a new table's \
         migration calls migration::enable_row_level_security): {unprotected:?}"
    );
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn without_a_company_a_request_connection_sees_no_rows() {
    let app = postgres_app().await;
    let (first, first_customer) = company_with_customer(&app, "rls-unset-a").await;
    company_with_customer(&app, "rls-unset-b").await;

    for (table, ..) in tenant_tables(&app.db).await {
        if EXEMPT.contains(&table.as_str()) {
            continue;
        }
        assert_eq!(
            count(
                &app.request_db,
                &format!("SELECT count(*) FROM \"{table}\"")
            )
            .await,
            0,
            "{table} shows rows to a statement that names no company"
        );
    }

    // The same statement in a transaction that names a company sees that company's rows.
    let transaction = app.request_db.begin().await.expect("a transaction");
    transaction
        .execute_unprepared(&format!(
            "SELECT set_config('app.company_id', '{first}', true)"
        ))
        .await
        .expect("the company is set");
    let visible: Vec<Uuid> = rows(&transaction, "SELECT id FROM customers")
        .await
        .iter()
        .map(|row| row.try_get_by_index(0).expect("an id"))
        .collect();
    assert_eq!(visible, [first_customer]);
    transaction.commit().await.expect("committed");
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn a_row_of_another_company_fails_the_policy() {
    let app = postgres_app().await;
    let (mine, my_customer) = company_with_customer(&app, "rls-write-a").await;
    let (theirs, _) = company_with_customer(&app, "rls-write-b").await;

    let as_mine = || async {
        let transaction = app.request_db.begin().await.expect("a transaction");
        transaction
            .execute_unprepared(&format!(
                "SELECT set_config('app.company_id', '{mine}', true)"
            ))
            .await
            .expect("the company is set");
        transaction
    };

    // The same insert for the transaction's own company passes: what fails below is the policy.
    let transaction = as_mine().await;
    new_customer(mine, "Mine")
        .insert(&transaction)
        .await
        .expect("a row of the transaction's company is written");
    transaction.rollback().await.expect("rolled back");

    let transaction = as_mine().await;
    let error = new_customer(theirs, "Planted")
        .insert(&transaction)
        .await
        .expect_err("a row of another company is refused");
    assert!(error.to_string().contains("row-level security"), "{error}");
    transaction.rollback().await.expect("rolled back");

    // Nor can a row be moved to another company.
    let transaction = as_mine().await;
    let error = transaction
        .execute_unprepared(&format!(
            "UPDATE customers SET company_id = '{theirs}' WHERE id = '{my_customer}'"
        ))
        .await
        .expect_err("a row moved to another company is refused");
    assert!(error.to_string().contains("row-level security"), "{error}");
    transaction.rollback().await.expect("rolled back");

    assert_eq!(
        count(
            &app.db,
            &format!("SELECT count(*) FROM customers WHERE company_id = '{theirs}'")
        )
        .await,
        1
    );
}

/// The role a connection acts as, the user it logged in as, and whether the role is a
/// superuser, bypasses row-level security or owns anything in the database.
async fn role_of(db: &impl ConnectionTrait) -> (String, String, bool, bool, bool) {
    let row = rows(
        db,
        "SELECT current_user::text, session_user::text, rolsuper, rolbypassrls,
                EXISTS (SELECT FROM pg_class WHERE relowner = pg_roles.oid)
         FROM pg_roles WHERE rolname = current_user",
    )
    .await
    .remove(0);
    (
        row.try_get_by_index(0).expect("role"),
        row.try_get_by_index(1).expect("login"),
        row.try_get_by_index(2).expect("superuser"),
        row.try_get_by_index(3).expect("bypasses"),
        row.try_get_by_index(4).expect("owns"),
    )
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn requests_act_as_a_role_that_neither_owns_nor_bypasses() {
    let app = postgres_app().await;
    let (role, login, superuser, bypasses, owns) = role_of(&app.request_db).await;
    assert_eq!(role, migration::APP_ROLE);
    assert!(
        !superuser && !bypasses && !owns,
        "{role}: {superuser} {bypasses} {owns}"
    );

    // The tables belong to the user the URL names, who migrated them.
    let owners: Vec<String> = rows(
        &app.request_db,
        "SELECT DISTINCT pg_get_userbyid(c.relowner)::text FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
         WHERE c.relkind = 'r'",
    )
    .await
    .iter()
    .map(|row| row.try_get_by_index(0).expect("an owner"))
    .collect();
    assert_eq!(owners, [login]);

    // The list pages' own connections act as the same role.
    let ReadPool::Postgres(pool) = &app.reads else {
        panic!("PostgreSQL's list reads have a pool of their own");
    };
    let reads = pool.get().await.expect("a read connection");
    let read_role: String = reads
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("the read pool answers")
        .get(0);
    assert_eq!(read_role, migration::APP_ROLE);
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn the_cross_tenant_pool_sees_every_company_and_owns_nothing() {
    let app = postgres_app().await;
    let (first, _) = company_with_customer(&app, "rls-system-a").await;
    let (second, _) = company_with_customer(&app, "rls-system-b").await;

    let (role, _, superuser, bypasses, owns) = role_of(&app.db).await;
    assert_eq!(role, migration::CROSS_TENANT_ROLE);
    assert!(
        bypasses && !superuser && !owns,
        "{role}: {superuser} {bypasses} {owns}"
    );
    let companies: Vec<Uuid> = rows(
        &app.db,
        "SELECT DISTINCT company_id FROM customers ORDER BY company_id",
    )
    .await
    .iter()
    .map(|row| row.try_get_by_index(0).expect("a company"))
    .collect();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(companies, expected);
}

/// A list reader holds its reads to its company by the policy alone (the statement here names
/// none), and hands its connection back without it: every connection the pool keeps, used by
/// one company and then another, comes back outside any transaction and company.
#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn a_list_reader_sees_its_company_only_on_every_pooled_connection() {
    let app = postgres_app().await;
    let (first, first_customer) = company_with_customer(&app, "rls-reader-a").await;
    let (second, second_customer) = company_with_customer(&app, "rls-reader-b").await;
    let statements = AtomicU64::new(0);

    for round in 0..20 {
        let (company, customer) = if round % 2 == 0 {
            (first, first_customer)
        } else {
            (second, second_customer)
        };
        let reader = Reader::acquire(&app.reads, CompanyId::from_row(company), &statements)
            .await
            .expect("a reader");
        let seen: Vec<customer::Model> = reader
            .all(customer::Entity::find())
            .await
            .expect("the customers");
        assert_eq!(
            seen.iter().map(|row| row.id).collect::<Vec<_>>(),
            [customer],
            "round {round}"
        );
    }
    let nobody = Reader::acquire(&app.reads, CompanyId::from_row(Uuid::now_v7()), &statements)
        .await
        .expect("a reader");
    let seen: Vec<customer::Model> = nobody
        .all(customer::Entity::find())
        .await
        .expect("no customers");
    assert!(seen.is_empty(), "{seen:?}");
    drop(nobody);

    let ReadPool::Postgres(pool) = &app.reads else {
        panic!("PostgreSQL's list reads have a pool of their own");
    };
    let every_connection =
        futures_util::future::try_join_all((0..pool.status().max_size).map(|_| pool.get()))
            .await
            .expect("every connection of the pool");
    for connection in &every_connection {
        let row = connection
            .query_one(
                "SELECT coalesce(current_setting('app.company_id', true), ''),
                        (SELECT count(*) FROM customers)",
                &[],
            )
            .await
            .expect("the connection answers");
        let (setting, visible): (String, i64) = (row.get(0), row.get(1));
        assert_eq!((setting.as_str(), visible), ("", 0));
    }
}

const ORDER_LIST: &str = "query { orders(first: 10) { totalCount edges { node {
    number customer { name } items { quantity product { sku } } history { to } } } } }";

/// The order list (its pipelined reads) answers each company its own orders, whole.
#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn the_order_list_answers_through_row_level_security() {
    let app = postgres_app().await;
    let mut lists = Vec::new();
    for (slug, orders) in [("rls-list-a", 2), ("rls-list-b", 3)] {
        let tenant = app.sign_up(slug, "RESTAURANT").await;
        let token = tenant.access_token;
        let product = app
            .create_product(&token, &format!("SKU-{slug}"), 500, None)
            .await;
        for index in 0..orders {
            let customer = app
                .create_customer(&token, &format!("{slug} customer {index}"))
                .await;
            let created = app.create_order(&token, &customer, &[(&product, 2)]).await;
            assert!(
                created["data"]["createOrder"]["id"].is_string(),
                "{created}"
            );
            app.transition(
                &token,
                &text(&created["data"]["createOrder"]["id"]),
                "CONFIRMED",
                None,
            )
            .await;
        }
        lists.push((
            slug,
            orders,
            app.graphql_as(&token, ORDER_LIST, json!({})).await,
        ));
    }

    for (slug, orders, body) in lists {
        let list = &body["data"]["orders"];
        assert_eq!(list["totalCount"], orders, "{body}");
        let nodes: Vec<&Value> = list["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|edge| &edge["node"])
            .collect();
        assert_eq!(nodes.len(), orders, "{body}");
        for (index, node) in nodes.iter().rev().enumerate() {
            assert_eq!(
                node["customer"]["name"],
                format!("{slug} customer {index}"),
                "{body}"
            );
            assert_eq!(
                node["items"],
                json!([{ "quantity": 2, "product": { "sku": format!("SKU-{slug}") } }]),
                "{body}"
            );
            let history: Vec<&Value> = node["history"]
                .as_array()
                .unwrap_or_else(|| panic!("{body}"))
                .iter()
                .map(|change| &change["to"])
                .collect();
            assert_eq!(history.last().copied(), Some(&json!("CONFIRMED")), "{body}");
        }
    }
}

/// The check the server runs on its request pool at start accepts that pool and refuses one
/// the policies would not hold: the cross-tenant pool's role, or the owner's own connection.
#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn the_server_refuses_a_request_pool_the_policies_would_not_hold() {
    let app = postgres_app().await;
    api::db::rls::check_tenant_pool(&app.request_db)
        .await
        .expect("the request pool is held by the policies");

    let bypasses = api::db::rls::check_tenant_pool(&app.db)
        .await
        .expect_err("a BYPASSRLS role is refused");
    assert!(bypasses.to_string().contains("bypasses"), "{bypasses}");

    let owner = api::db::connect_with(&app.settings, api::db::Role::Owner, 1)
        .await
        .expect("the owner connects");
    assert!(api::db::rls::check_tenant_pool(&owner).await.is_err());
    owner.close().await.ok();
}
