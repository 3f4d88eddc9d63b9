//! Report ingest: the group-commit writer ([`batcher`]). The hash-chain
//! rules it relies on are the store's ([`crate::store::chain`]), applied
//! inside the transaction that writes each batch.

pub mod batcher;
pub mod health;
