//! Notifications: the templates a company writes its messages with, and (in the other modules)
//! who is told what, on which channel, and when.

pub mod templates;
