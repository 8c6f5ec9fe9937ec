//! sea-orm entities, one module per table. The tenant-owned ones are read and written through
//! `api::db::tenant::TenantTxn`, which scopes every query to its company.

pub mod api_key;
pub mod casbin_rule;
pub mod company;
pub mod customer;
pub mod financial_transaction;
pub mod incoming_webhook;
pub mod invitation;
pub mod job;
pub mod job_key;
pub mod job_schedule;
pub mod membership;
pub mod notification;
pub mod notification_attempt;
pub mod notification_channel;
pub mod notification_consent;
pub mod notification_preference;
pub mod notification_rule;
pub mod notification_template;
pub mod order;
pub mod order_counter;
pub mod order_item;
pub mod order_status_history;
pub mod outbox;
pub mod payment;
pub mod payment_settings;
pub mod product;
pub mod provider_secret;
pub mod refresh_token;
pub mod refund;
pub mod role;
pub mod user;
pub mod webhook_attempt;
pub mod webhook_delivery;
pub mod webhook_endpoint;
pub mod workflow;
