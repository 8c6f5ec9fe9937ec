//! Who wants which notifications: per member or customer, category and channel, the opt-ins and
//! opt-outs (`notification_preferences`), the consents marketing needs
//! (`notification_consents`, kept when revoked: the record of who agreed to what, when), and
//! the company's automation rules (`notification_rules`).

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261122_000002_create_identity::{company_fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(NotificationPreferences::Table)
                    .col(pk_uuid(NotificationPreferences::Id))
                    .col(uuid(NotificationPreferences::CompanyId))
                    .col(string_len(NotificationPreferences::SubjectKind, 16))
                    .col(uuid(NotificationPreferences::SubjectId))
                    .col(string_len(NotificationPreferences::Category, 32))
                    .col(string_len(NotificationPreferences::Channel, 16))
                    .col(boolean(NotificationPreferences::OptedIn))
                    .col(string_len(NotificationPreferences::Source, 32))
                    .col(timestamp_with_time_zone(NotificationPreferences::UpdatedAt))
                    .foreign_key(&mut company_fk(
                        NotificationPreferences::Table,
                        NotificationPreferences::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;
        // One choice per person, category and channel; also the index `decide` reads by.
        manager
            .create_index(
                Index::create()
                    .name("notification_preferences_subject_key")
                    .table(NotificationPreferences::Table)
                    .col(NotificationPreferences::CompanyId)
                    .col(NotificationPreferences::SubjectKind)
                    .col(NotificationPreferences::SubjectId)
                    .col(NotificationPreferences::Category)
                    .col(NotificationPreferences::Channel)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(NotificationConsents::Table)
                    .col(pk_uuid(NotificationConsents::Id))
                    .col(uuid(NotificationConsents::CompanyId))
                    .col(string_len(NotificationConsents::SubjectKind, 16))
                    .col(uuid(NotificationConsents::SubjectId))
                    .col(string_len(NotificationConsents::Purpose, 32))
                    .col(string_len(NotificationConsents::Channel, 16))
                    .col(timestamp_with_time_zone(NotificationConsents::GrantedAt))
                    .col(timestamp_with_time_zone_null(
                        NotificationConsents::RevokedAt,
                    ))
                    .col(string_len(NotificationConsents::Source, 32))
                    .col(string_len(NotificationConsents::TextVersion, 64))
                    .col(uuid_null(NotificationConsents::RecordedBy))
                    .foreign_key(&mut company_fk(
                        NotificationConsents::Table,
                        NotificationConsents::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "notification_consents_subject_idx",
            NotificationConsents::Table,
            &[
                NotificationConsents::CompanyId,
                NotificationConsents::SubjectKind,
                NotificationConsents::SubjectId,
                NotificationConsents::Purpose,
                NotificationConsents::Channel,
            ],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(NotificationRules::Table)
                    .col(pk_uuid(NotificationRules::Id))
                    .col(uuid(NotificationRules::CompanyId))
                    .col(string_len(NotificationRules::Name, 200))
                    .col(string_len(NotificationRules::EventType, 64))
                    .col(text(NotificationRules::Conditions))
                    .col(text(NotificationRules::Recipient))
                    .col(string_len(NotificationRules::Channels, 200))
                    .col(string_len(NotificationRules::TemplateName, 100))
                    .col(string_len(NotificationRules::Category, 32))
                    .col(integer(NotificationRules::DelaySeconds))
                    .col(boolean(NotificationRules::Enabled))
                    .col(boolean(NotificationRules::IsDefault))
                    .col(timestamp_with_time_zone(NotificationRules::CreatedAt))
                    .col(timestamp_with_time_zone(NotificationRules::UpdatedAt))
                    .foreign_key(&mut company_fk(
                        NotificationRules::Table,
                        NotificationRules::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;
        // What the relay asks for each batch, and the evaluation job for each event.
        index(
            manager,
            "notification_rules_company_event_idx",
            NotificationRules::Table,
            &[
                NotificationRules::CompanyId,
                NotificationRules::EventType,
                NotificationRules::Enabled,
            ],
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("notification_rules_company_name_key")
                    .table(NotificationRules::Table)
                    .col(NotificationRules::CompanyId)
                    .col(NotificationRules::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        for table in [
            "notification_preferences",
            "notification_consents",
            "notification_rules",
        ] {
            crate::enable_row_level_security(manager, table).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(NotificationRules::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(NotificationConsents::Table).to_owned())
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(NotificationPreferences::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum NotificationPreferences {
    Table,
    Id,
    CompanyId,
    /// `MEMBER` (a user id) or `CUSTOMER` (a customer id).
    SubjectKind,
    SubjectId,
    Category,
    Channel,
    OptedIn,
    /// Where the choice came from: `SELF`, `STAFF`, `UNSUBSCRIBE_LINK`, `INBOUND_REPLY`.
    Source,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum NotificationConsents {
    Table,
    Id,
    CompanyId,
    SubjectKind,
    SubjectId,
    /// The category consented to (`marketing`).
    Purpose,
    Channel,
    GrantedAt,
    RevokedAt,
    Source,
    /// Which wording of the consent text the person agreed to.
    TextVersion,
    /// The member who recorded it; null when the person did it themselves.
    RecordedBy,
}

#[derive(DeriveIden, Clone, Copy)]
enum NotificationRules {
    Table,
    Id,
    CompanyId,
    Name,
    EventType,
    /// JSON array of `{field, op, value}`.
    Conditions,
    /// JSON `{kind: CUSTOMER|MEMBER|ROLE|ACTOR, …}`.
    Recipient,
    /// JSON array of channels in fallback order.
    Channels,
    TemplateName,
    Category,
    DelaySeconds,
    Enabled,
    IsDefault,
    CreatedAt,
    UpdatedAt,
}
