//! `notifications`: one message to one person on one channel, with its delivery state
//! (tenant-owned).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    /// `EMAIL`, `WHATSAPP`, `SMS` or `IN_APP`.
    pub channel: String,
    /// `orders`, `billing`, `security`…: what preferences and consent go by.
    pub category: String,
    /// The member an in-app notification is for.
    pub user_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    /// The E.164 phone or normalised email it goes to, as `Phone`/`Email` parse them.
    pub address: Option<String>,
    pub template: Option<String>,
    pub locale: Option<String>,
    /// The template's variables, JSON.
    #[sea_orm(column_type = "Text")]
    pub variables: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub subject: Option<String>,
    /// The rendered text (given inline, or rendered from the template when sent).
    #[sea_orm(column_type = "Text", nullable)]
    pub body: Option<String>,
    /// `QUEUED`, `SENT`, `DELIVERED`, `READ`, `FAILED` or `CANCELLED`.
    pub status: String,
    pub idempotency_key: Option<String>,
    pub priority: i32,
    /// The `notifications.send` job carrying it.
    pub job_id: Option<Uuid>,
    pub attempt_count: i32,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub last_error_code: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
    pub delivered_at: Option<DateTimeUtc>,
    /// When the member read it in the app, or the provider reported it read.
    pub read_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::notification_attempt::Entity")]
    Attempts,
}

impl Related<super::notification_attempt::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Attempts.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
