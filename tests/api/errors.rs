//! Errors: a unique violation is recognised by the key it violates, on SQLite (by its columns)
//! and on PostgreSQL (by the constraint's name), so a caller never mistakes one key for another.

use api::error::{ApiError, UniqueKey};
use chrono::Utc;
use entity::user;
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use uuid::Uuid;

use crate::helpers::spawn_app;

const USERS_EMAIL: UniqueKey = UniqueKey::new("users_email_key", "users", &["email"]);
const COMPANIES_SLUG: UniqueKey = UniqueKey::new("companies_slug_key", "companies", &["slug"]);
/// A key over two columns, to see that every column must match.
const USERS_EMAIL_NAME: UniqueKey = UniqueKey::new("users_email_key", "users", &["email", "name"]);

fn user_with(email: &str) -> user::ActiveModel {
    let now = Utc::now();
    user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email.to_string()),
        name: Set("Dup".into()),
        password_hash: Set(None),
        locale: Set("en".into()),
        is_operator: Set(false),
        password_changed_at: Set(now),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

#[tokio::test]
async fn a_unique_violation_is_matched_by_the_key_it_violates() {
    let app = spawn_app().await;
    let email = format!("dup-{}@example.com", Uuid::now_v7().simple());
    user_with(&email)
        .insert(&app.db)
        .await
        .expect("first insert");
    let error = user_with(&email)
        .insert(&app.db)
        .await
        .expect_err("the email is taken");

    assert!(USERS_EMAIL.violated_by(&error), "{error:?}");
    assert!(!COMPANIES_SLUG.violated_by(&error), "{error:?}");
    let is_sqlite = app.settings.database_url.is_none();
    // PostgreSQL names the constraint, so the columns are not compared there.
    assert_eq!(
        USERS_EMAIL_NAME.violated_by(&error),
        !is_sqlite,
        "{error:?}"
    );

    assert_eq!(
        ApiError::conflict_on(error, USERS_EMAIL, "taken").code(),
        "CONFLICT"
    );
    let error = user_with(&email).insert(&app.db).await.expect_err("taken");
    assert_eq!(
        ApiError::conflict_on(error, COMPANIES_SLUG, "taken").code(),
        "INTERNAL",
        "another key's violation is not answered as this one"
    );
}
