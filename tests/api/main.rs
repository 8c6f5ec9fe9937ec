//! End-to-end tests: each starts the real server on port 0 with a fresh database and talks to
//! it over HTTP. On SQLite by default; on PostgreSQL and Redis when `TEST_DATABASE_URL` and
//! `TEST_REDIS_URL` are set (and then an unreachable server fails the test, never skips it).

// Tests read and check rows across companies on purpose (that B's row is untouched, that a
// row landed where it should): the tenant-scoping lint is for the application.
#![allow(clippy::disallowed_methods)]

mod access;
mod architecture;
mod catalog;
mod cross_tenant;
mod email;
mod errors;
mod event_payloads;
mod foundation;
mod helpers;
mod identity;
mod invitations;
mod jobs;
mod lifecycle;
mod notification_rules;
mod notification_templates;
mod notifications;
mod orders;
mod payments;
mod plain;
mod realtime;
mod redis_outage;
mod rls;
mod smtp;
mod sockets;
mod surfaces;
mod tenancy;
mod tenant_transaction;
mod webhooks;
mod workflows;
