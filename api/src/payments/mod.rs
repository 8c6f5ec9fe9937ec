//! Clients of outside payment providers. The rules of payments live in
//! [`crate::domain::payment`] and [`crate::services::payments`].

pub mod stripe;
