//! Report ingest: the pure hash-chain decision ([`chain`]) and the
//! group-commit writer ([`batcher`]).

pub mod batcher;
pub mod chain;
