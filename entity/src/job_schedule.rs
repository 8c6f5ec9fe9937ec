//! `job_schedules`: recurring work. Whichever instance sees `next_run_at` pass enqueues that
//! tick's job and moves `next_run_at` on, under a row lock, so a tick fires once.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job_schedules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// A cron pattern (five fields, or six with seconds first).
    pub cron: String,
    /// The IANA zone the pattern is read in, e.g. a company's `America/Sao_Paulo`.
    pub time_zone: String,
    pub queue: String,
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub company_id: Option<Uuid>,
    pub next_run_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
