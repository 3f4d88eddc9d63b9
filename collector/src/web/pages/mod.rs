//! One module per dashboard page. Each handler takes the [`Session`]
//! (so an anonymous GET is sent to `/login`), reads through the store, and
//! renders with maud inside [`super::layout::page`]. POST handlers check
//! the CSRF token and the admin role before anything else.
//!
//! [`Session`]: super::auth::Session

pub mod add_devices;
pub mod audit;
pub mod device;
pub mod devices;
pub mod enrollment;
pub mod exceptions;
pub mod overview;
pub mod policy;

/// A form or query value, with an empty field (what a browser sends for an
/// untouched input) read as absent.
pub(crate) fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}
