//! Notifications: what to send, to whom and when.

pub mod preferences;
pub mod rules;
