//! A small blog on SeaORM that uses cache-purge-hooks: the migrations ([`Migrator`]), the
//! entities ([`entity`]) and the demo program (`src/main.rs`).
#![warn(missing_docs)]

pub mod entity;
pub mod migration;

pub use migration::Migrator;
