//! `palisade-collector`: enrolls devices, verifies and stores their signed
//! posture reports, serves signed policy, and shows IT the fleet.
//!
//! Layout: [`cli`] holds the subcommands; [`app`] is the state every
//! handler reaches, below both [`server`] and [`web`]; [`metrics`] the
//! Prometheus counters; [`config`] reads the file and
//! flags; [`server`] is the HTTP side (one module per endpoint);
//! [`ingest`] holds the group-commit writer; [`store`] is the only way to
//! durable state (SQLite or PostgreSQL behind one contract) and owns the
//! pure hash-chain rules; [`state`] keeps the key files; [`secrets`] makes
//! and parses enrollment secrets; [`installers`] writes the silent-install
//! command lines; [`web`] is the IT dashboard (HTML pages
//! behind a login). `main.rs` only sets up and calls [`cli::run`].
#![deny(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod ingest;
pub mod installers;
pub mod metrics;
pub mod operations;
pub mod secrets;
pub mod server;
pub mod state;
pub mod store;
pub mod web;
