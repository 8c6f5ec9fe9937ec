//! Pure domain types that parse their input: no I/O, each with its own tests.

pub mod boleto;
mod company;
pub mod document;
mod email;
pub mod money;
pub mod notification_rules;
pub mod payment;
pub mod phone;
pub mod pix;
pub mod text;
pub mod workflow;

pub use company::{BusinessType, CompanyStatus, Currency, Locale, Slug, Timezone};
pub use email::Email;
pub use text::TextRule;
