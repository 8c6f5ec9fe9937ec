//! Pure domain types that parse their input: no I/O, each with its own tests.

mod company;
mod email;

pub use company::{BusinessType, CompanyStatus, Currency, Locale, Slug, Timezone};
pub use email::Email;
