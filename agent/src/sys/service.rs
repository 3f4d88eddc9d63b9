//! The Service Control Manager's way into the process: the `ServiceMain`
//! entry point the SCM calls on its own thread, and the dispatcher that
//! connects this process to the SCM.
//!
//! Only the glue lives here, because `define_windows_service!` expands to an
//! `unsafe` block (reading the argument vector the SCM passes) and `unsafe`
//! lives in `sys/`. What the service *does* (run the daemon, report its
//! state) is `cli/service.rs`; this module knows nothing of the daemon, so
//! `sys/` never imports `daemon/`.

use std::ffi::OsString;
use std::sync::OnceLock;

/// The function the SCM's thread runs, set once by [`run_dispatcher`]. The
/// SCM's entry point is a plain `extern "system" fn` with no context
/// argument, so the choice has to be reachable from a static.
static SERVICE_MAIN: OnceLock<fn(Vec<OsString>)> = OnceLock::new();

/// Connects this process to the SCM and blocks until the service has
/// stopped. The SCM calls `main` on a thread of its own, with the
/// arguments given to `StartService` (not those of the command line, which
/// the process still has in `std::env::args`).
///
/// Fails at once with the OS error 1063
/// (`ERROR_FAILED_SERVICE_CONTROLLER_CONNECT`) when the process was not
/// started by the SCM, e.g. from a console.
pub fn run_dispatcher(
    service_name: &str,
    main: fn(Vec<OsString>),
) -> Result<(), windows_service::Error> {
    // A second call (there is none: one process is one service) keeps the
    // first function, which is the same one.
    let _ = SERVICE_MAIN.set(main);
    entry::start(service_name)
}

/// The Win32 error a dispatcher started outside the SCM fails with.
pub const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;

#[allow(unsafe_code)]
mod entry {
    // SAFETY: the macro's one `unsafe` call,
    // `service_dispatcher::parse_service_arguments`, reads `argc` wide
    // strings from the `argv` the SCM passes to ServiceMain; both come from
    // the system and are valid for the call, as the crate requires. This
    // entry point is handed only to `service_dispatcher::start` below.
    windows_service::define_windows_service!(ffi_service_main, service_main);

    fn service_main(arguments: Vec<std::ffi::OsString>) {
        if let Some(main) = super::SERVICE_MAIN.get() {
            main(arguments);
        }
    }

    pub(super) fn start(service_name: &str) -> Result<(), windows_service::Error> {
        windows_service::service_dispatcher::start(service_name, ffi_service_main)
    }
}
