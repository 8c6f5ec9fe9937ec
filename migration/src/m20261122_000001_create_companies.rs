use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Companies::Table)
                    .col(pk_uuid(Companies::Id))
                    .col(string_len(Companies::Name, 200))
                    .col(string_len_uniq(Companies::Slug, 64))
                    .col(string_len(Companies::BusinessType, 32))
                    .col(string_len(Companies::Locale, 16))
                    .col(string_len(Companies::Timezone, 64))
                    .col(char_len(Companies::Currency, 3))
                    .col(string_len(Companies::Status, 16))
                    .col(timestamp_with_time_zone(Companies::CreatedAt))
                    .col(timestamp_with_time_zone(Companies::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Companies::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Companies {
    Table,
    Id,
    Name,
    Slug,
    BusinessType,
    Locale,
    Timezone,
    Currency,
    Status,
    CreatedAt,
    UpdatedAt,
}
