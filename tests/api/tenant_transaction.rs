//! The tenant transaction: what it builds is scoped to its company, whatever the query names,
//! and two writers on SQLite wait for each other instead of one failing.

use api::{
    db::tenant::{CompanyId, Intent},
    state::AppState,
};
use chrono::Utc;
use entity::customer;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, Statement, sea_query::Expr,
};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

/// The server's state on the test app's database, to open transactions on directly.
async fn state_of(app: &TestApp) -> AppState {
    AppState::connect(app.settings.clone())
        .await
        .expect("the state connects to the test database")
}

fn company(id: &str) -> CompanyId {
    CompanyId::from_row(id.parse().expect("a company id"))
}

fn new_customer(name: &str) -> customer::ActiveModel {
    let now = Utc::now();
    customer::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.to_string()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_tenant_transaction_reaches_only_its_own_company() {
    let app = spawn_app().await;
    let a = app.sign_up("scope-a", "RESTAURANT").await;
    let b = app.sign_up("scope-b", "RESTAURANT").await;
    let theirs: Uuid = app
        .create_customer(&b.access_token, "B's customer")
        .await
        .parse()
        .expect("a customer id");
    let state = state_of(&app).await;

    let txn = state
        .begin_for_company(company(&a.company_id), "test", Intent::Write)
        .await
        .expect("a transaction");
    let by_id = txn
        .find::<customer::Entity>()
        .filter(customer::Column::Id.eq(theirs))
        .one(&txn)
        .await
        .expect("the read runs");
    assert!(by_id.is_none(), "A's transaction read B's customer");
    let renamed = txn
        .update::<customer::Entity>()
        .col_expr(customer::Column::Name, Expr::value("renamed by A"))
        .filter(customer::Column::Id.eq(theirs))
        .exec(&txn)
        .await
        .expect("the update runs");
    assert_eq!(
        renamed.rows_affected, 0,
        "A's transaction updated B's customer"
    );
    let deleted = txn
        .delete::<customer::Entity>()
        .filter(customer::Column::Id.eq(theirs))
        .exec(&txn)
        .await
        .expect("the delete runs");
    assert_eq!(
        deleted.rows_affected, 0,
        "A's transaction deleted B's customer"
    );
    let mut smuggled = new_customer("inserted by A");
    smuggled.company_id = Set(b.company_id.parse().expect("a company id"));
    let inserted = txn.insert(smuggled).await.expect("the insert runs");
    assert_eq!(inserted.company_id.to_string(), a.company_id);
    txn.commit().await.expect("the commit");

    let stored = customer::Entity::find_by_id(theirs)
        .one(&app.db)
        .await
        .expect("the read runs")
        .expect("B's customer is still there");
    assert_eq!(stored.name, "B's customer");
    let of_b = customer::Entity::find()
        .filter(customer::Column::CompanyId.eq(stored.company_id))
        .count(&app.db)
        .await
        .expect("the count runs");
    assert_eq!(of_b, 1, "A's insert landed in B");

    let read = state
        .begin_for_company(company(&a.company_id), "test", Intent::Read)
        .await
        .expect("a read transaction");
    assert!(
        read.insert(new_customer("written in a read"))
            .await
            .is_err(),
        "a read transaction wrote"
    );
}

/// Both read before they write, as accepting an invitation does. Started deferred on SQLite,
/// the second to write would find its snapshot outdated and fail with `SQLITE_BUSY` at once;
/// `BEGIN IMMEDIATE` makes it wait for the first instead.
#[tokio::test]
async fn two_writers_that_read_first_both_commit() {
    let app = spawn_app().await;
    let a = app.sign_up("writers", "RESTAURANT").await;
    let state = state_of(&app).await;
    let writer = |name: &'static str| {
        let state = state.clone();
        let company = company(&a.company_id);
        async move {
            let txn = state
                .begin_for_company(company, "test", Intent::Write)
                .await?;
            txn.find::<customer::Entity>().count(&txn).await?;
            // Holds its read while the other one starts.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            txn.insert(new_customer(name)).await?;
            txn.commit().await
        }
    };

    let (first, second) = tokio::join!(writer("first"), writer("second"));

    first.expect("the first writer commits");
    second.expect("the second writer commits");
    let txn = state
        .begin_for_company(company(&a.company_id), "test", Intent::Read)
        .await
        .expect("a read transaction");
    let count = txn
        .find::<customer::Entity>()
        .count(&txn)
        .await
        .expect("the count runs");
    assert_eq!(count, 2);
}

/// What row-level security reads: the transaction's first statement sets `app.company_id`,
/// and a read transaction refuses even a raw write.
#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn on_postgres_a_tenant_transaction_sets_its_company_for_the_policies() {
    crate::helpers::require_shared_infrastructure();
    let app = spawn_app().await;
    let a = app.sign_up("setting-a", "RESTAURANT").await;
    let state = state_of(&app).await;
    let setting = Statement::from_string(
        DbBackend::Postgres,
        "SELECT current_setting('app.company_id', true) AS company",
    );

    for intent in [Intent::Read, Intent::Write, Intent::ChangeAccess] {
        let txn = state
            .begin_for_company(company(&a.company_id), "test", intent)
            .await
            .expect("a transaction");
        let row = txn
            .query_one_raw(setting.clone())
            .await
            .expect("the setting reads")
            .expect("a row");
        let set: Option<String> = row.try_get("", "company").expect("a text column");
        assert_eq!(set.as_deref(), Some(a.company_id.as_str()), "{intent:?}");
        txn.commit().await.expect("the commit");
    }

    let read = state
        .begin_for_company(company(&a.company_id), "test", Intent::Read)
        .await
        .expect("a read transaction");
    let refused = read
        .execute_unprepared("UPDATE customers SET name = 'written in a read'")
        .await
        .expect_err("PostgreSQL refuses a write in a read transaction");
    assert!(
        refused.to_string().contains("read-only"),
        "unexpected error: {refused}"
    );

    // Outside a tenant transaction the setting is empty: a policy comparing with it sees no row.
    let outside = app
        .db
        .query_one_raw(setting)
        .await
        .expect("the setting reads")
        .expect("a row");
    let unset: Option<String> = outside.try_get("", "company").expect("a text column");
    assert!(unset.unwrap_or_default().is_empty());
}
