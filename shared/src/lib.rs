//! Palisade's wire types, shared by the agent and the collector.
//!
//! This crate owns the shapes that cross a process boundary: the posture
//! [`report`] (schema version 1), the [`policy`] document, the DSSE
//! [`envelope`] that carries both, and the [`protocol`] messages for
//! enrollment. It must not do I/O: no files, no sockets, no clocks that are
//! not handed in, no tokio. Callers read bytes and pass them here; this crate
//! parses, validates, signs and verifies them, and returns typed errors.
#![forbid(unsafe_code)]

pub mod diagnostics;
pub mod envelope;
pub mod error_text;
pub mod ids;
pub mod pin;
pub mod policy;
pub mod protocol;
pub mod report;

pub use envelope::{Envelope, KeyId, VerifiedPayload, VerifyError};
pub use ids::{DeviceId, RuleId};
pub use policy::Policy;
pub use report::Report;
