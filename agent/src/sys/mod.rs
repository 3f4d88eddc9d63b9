//! Everything the agent does to reach the operating system, and nothing else.
//!
//! Probes and enforcers touch the machine only through this module: file
//! reads and writes under a host root ([`Host`]; a prepared tree in tests and
//! `--host-root`), external commands that time out and are logged
//! ([`Host::run`]), and on Windows the registry ([`registry`]), the account policy
//! ([`netapi`], `NetUserModalsGet`), the USB device tree ([`setupapi`];
//! [`registry_value`] decodes its property bytes, on every OS),
//! BitLocker's volumes through WMI ([`bitlocker`], the `wmi` crate's
//! `Win32_EncryptableVolume` query), the ProgramData folder
//! ([`known_folder`]), directory ACLs ([`acl`]), the status
//! pipe ([`pipe`]) and the service dispatcher ([`service`]). The direct
//! Win32 calls carry `// SAFETY:` notes. On macOS, the
//! console user ([`console_user_macos`]); the macOS tools themselves run
//! through [`Host::run`]. Evaluators and parsers import nothing from here: they are pure, so
//! they compile and are tested on every OS (ARCHITECTURE.md).
//!
//! Modelled on sudo-rs's `src/system/`: if the agent ever needs `unsafe`
//! (a Windows API), it is written here, with a `// SAFETY:` comment.

#[cfg(windows)]
pub mod acl;
#[cfg(windows)]
pub mod bitlocker;
// The parser compiles everywhere (tested on Linux); the probe is macOS-only.
pub mod console_user_macos;
mod host;
#[cfg(windows)]
pub mod known_folder;
#[cfg(windows)]
pub mod netapi;
#[cfg(windows)]
pub mod pipe;
#[cfg(windows)]
pub mod registry;
// Pure decoding of SetupAPI's registry property bytes: compiled (and
// fuzzed) everywhere, called only on Windows.
pub mod registry_value;
pub mod sddl;
#[cfg(windows)]
pub mod service;
#[cfg(windows)]
pub mod setupapi;
mod uevent;

pub use host::{CommandError, CommandOutput, CommandSpec, DEFAULT_COMMAND_TIMEOUT, Host};
pub use uevent::Uevent;
