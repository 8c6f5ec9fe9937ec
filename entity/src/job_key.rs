//! `job_keys`: what the job runtime knows about a job key — paused or not, and its recent
//! starts, which per-key rate limits count.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub paused: bool,
    /// JSON array of the start times within the key's rate interval.
    #[sea_orm(column_type = "Text")]
    pub recent_starts: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
