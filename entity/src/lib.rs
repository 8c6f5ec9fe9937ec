//! sea-orm entities, one module per table. Only `api::services` reads or writes the
//! tenant-owned ones, through the scoped helpers there.

pub mod company;
