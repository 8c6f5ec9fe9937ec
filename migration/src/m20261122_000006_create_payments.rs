//! Payments of orders, their refunds, the ledger of money movements, and each company's
//! payment settings.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261122_000002_create_identity::{company_fk, index, unique_index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(pk_uuid(Payments::Id))
                    .col(uuid(Payments::CompanyId))
                    .col(uuid(Payments::OrderId))
                    .col(string_len(Payments::Method, 16))
                    .col(string_len(Payments::Provider, 32))
                    .col(big_integer(Payments::AmountMinor))
                    .col(char_len(Payments::Currency, 3))
                    .col(big_integer(Payments::RefundedMinor).default(0))
                    .col(string_len(Payments::Status, 24))
                    .col(string_len_null(Payments::ProviderReference, 255))
                    .col(text_null(Payments::ClientSecret))
                    .col(text_null(Payments::CheckoutUrl))
                    .col(text_null(Payments::PixBrCode))
                    .col(string_len_null(Payments::PixTxid, 25))
                    .col(string_len_null(Payments::BoletoBarcode, 44))
                    .col(date_null(Payments::BoletoDueDate))
                    .col(string_len(Payments::IdempotencyKey, 255))
                    .col(string_len(Payments::RequestHash, 64))
                    .col(timestamp_with_time_zone_null(Payments::ProcessingUntil))
                    .col(text_null(Payments::FailureReason))
                    .col(text_null(Payments::Note))
                    .col(uuid_null(Payments::CreatedBy))
                    .col(timestamp_with_time_zone_null(Payments::PaidAt))
                    .col(timestamp_with_time_zone(Payments::CreatedAt))
                    .col(timestamp_with_time_zone(Payments::UpdatedAt))
                    .foreign_key(&mut company_fk(Payments::Table, Payments::CompanyId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Payments::Table, Payments::OrderId)
                            .to(Orders::Table, Orders::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Keys are kept with the payment, so a retry with the same key finds it for as long as
        // the payment exists (well over the 24 h clients may rely on).
        unique_index(
            manager,
            "payments_company_idempotency_key",
            Payments::Table,
            &[Payments::CompanyId, Payments::IdempotencyKey],
        )
        .await?;
        index(
            manager,
            "payments_company_order_idx",
            Payments::Table,
            &[Payments::CompanyId, Payments::OrderId],
        )
        .await?;
        index(
            manager,
            "payments_company_reference_idx",
            Payments::Table,
            &[Payments::CompanyId, Payments::ProviderReference],
        )
        .await?;
        index(
            manager,
            "payments_company_created_idx",
            Payments::Table,
            &[Payments::CompanyId, Payments::Id],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .col(pk_uuid(Refunds::Id))
                    .col(uuid(Refunds::CompanyId))
                    .col(uuid(Refunds::PaymentId))
                    .col(big_integer(Refunds::AmountMinor))
                    .col(char_len(Refunds::Currency, 3))
                    .col(string_len_null(Refunds::Reason, 500))
                    .col(string_len(Refunds::Status, 16))
                    .col(string_len_null(Refunds::ProviderReference, 255))
                    .col(string_len(Refunds::IdempotencyKey, 255))
                    .col(string_len(Refunds::RequestHash, 64))
                    .col(timestamp_with_time_zone_null(Refunds::ProcessingUntil))
                    .col(text_null(Refunds::FailureReason))
                    .col(uuid_null(Refunds::CreatedBy))
                    .col(timestamp_with_time_zone(Refunds::CreatedAt))
                    .col(timestamp_with_time_zone(Refunds::UpdatedAt))
                    .foreign_key(&mut company_fk(Refunds::Table, Refunds::CompanyId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Refunds::Table, Refunds::PaymentId)
                            .to(Payments::Table, Payments::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "refunds_company_idempotency_key",
            Refunds::Table,
            &[Refunds::CompanyId, Refunds::IdempotencyKey],
        )
        .await?;
        index(
            manager,
            "refunds_company_payment_idx",
            Refunds::Table,
            &[Refunds::CompanyId, Refunds::PaymentId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(FinancialTransactions::Table)
                    .col(big_pk_auto(FinancialTransactions::Id))
                    .col(uuid(FinancialTransactions::CompanyId))
                    .col(uuid_null(FinancialTransactions::PaymentId))
                    .col(uuid_null(FinancialTransactions::RefundId))
                    .col(string_len(FinancialTransactions::Kind, 16))
                    .col(string_len(FinancialTransactions::Method, 16))
                    .col(big_integer(FinancialTransactions::AmountMinor))
                    .col(char_len(FinancialTransactions::Currency, 3))
                    .col(string_len_null(FinancialTransactions::Description, 500))
                    .col(timestamp_with_time_zone(FinancialTransactions::OccurredAt))
                    .foreign_key(&mut company_fk(
                        FinancialTransactions::Table,
                        FinancialTransactions::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "financial_transactions_company_time_idx",
            FinancialTransactions::Table,
            &[
                FinancialTransactions::CompanyId,
                FinancialTransactions::OccurredAt,
            ],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(PaymentSettings::Table)
                    .col(pk_uuid(PaymentSettings::Id))
                    .col(uuid_uniq(PaymentSettings::CompanyId))
                    .col(string_len_null(PaymentSettings::PixKey, 77))
                    .col(string_len_null(PaymentSettings::PixMerchantName, 25))
                    .col(string_len_null(PaymentSettings::PixMerchantCity, 15))
                    .col(string_len_null(PaymentSettings::BoletoBankCode, 3))
                    .col(string_len_null(PaymentSettings::BoletoAgency, 4))
                    .col(string_len_null(PaymentSettings::BoletoAccount, 8))
                    .col(string_len_null(PaymentSettings::BoletoWallet, 2))
                    .col(text_null(PaymentSettings::StripeSecretKeyCiphertext))
                    .col(timestamp_with_time_zone(PaymentSettings::UpdatedAt))
                    .foreign_key(&mut company_fk(
                        PaymentSettings::Table,
                        PaymentSettings::CompanyId,
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            PaymentSettings::Table.into_iden(),
            FinancialTransactions::Table.into_iden(),
            Refunds::Table.into_iden(),
            Payments::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Orders {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum Payments {
    Table,
    Id,
    CompanyId,
    OrderId,
    Method,
    Provider,
    AmountMinor,
    Currency,
    RefundedMinor,
    Status,
    ProviderReference,
    ClientSecret,
    CheckoutUrl,
    PixBrCode,
    PixTxid,
    BoletoBarcode,
    BoletoDueDate,
    IdempotencyKey,
    RequestHash,
    ProcessingUntil,
    FailureReason,
    Note,
    CreatedBy,
    PaidAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Refunds {
    Table,
    Id,
    CompanyId,
    PaymentId,
    AmountMinor,
    Currency,
    Reason,
    Status,
    ProviderReference,
    IdempotencyKey,
    RequestHash,
    ProcessingUntil,
    FailureReason,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum FinancialTransactions {
    Table,
    Id,
    CompanyId,
    PaymentId,
    RefundId,
    Kind,
    Method,
    AmountMinor,
    Currency,
    Description,
    OccurredAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum PaymentSettings {
    Table,
    Id,
    CompanyId,
    PixKey,
    PixMerchantName,
    PixMerchantCity,
    BoletoBankCode,
    BoletoAgency,
    BoletoAccount,
    BoletoWallet,
    StripeSecretKeyCiphertext,
    UpdatedAt,
}
