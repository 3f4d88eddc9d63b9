//! `palisade-agent`: checks device rules, enforces where the policy says so,
//! and reports signed posture to the collector.
//!
//! Layout: [`checks`] holds one module per rule (probe, parsers, evaluator)
//! and the registry that runs them; [`sys`] is the only way probes touch the
//! machine; [`report`] assembles a report document from verdicts; [`cli`]
//! holds the subcommands. `main.rs` only parses arguments and maps errors to
//! exit codes.
#![deny(unsafe_code)]

pub mod checks;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod durable;
pub mod enforce;
pub mod identity;
pub mod nudge;
pub mod policy;
pub mod report;
pub mod spool;
pub mod state_dir;
pub mod status;
pub mod sys;
