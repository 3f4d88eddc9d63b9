//! The status named pipe's Win32 side: instances created with their DACL,
//! a client handle opened with only the rights the DACL gives people, and
//! who a connected client is (its token, by impersonation).
//!
//! The pipe's DACL ([`PIPE_SDDL`]): SYSTEM and Administrators have full
//! control; interactive users (`IU`: whoever sits at the laptop, locally
//! or over Remote Desktop) may read and write data and nothing else. They
//! lack `FILE_CREATE_PIPE_INSTANCE`, so no user can add an instance of
//! the agent's pipe and answer in its place; and the first instance is
//! created with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so the agent cannot itself
//! become a second server of a name someone else took first. Changes are
//! allowed by the client's token, never by anything it sends.

// Every function here is a Win32 call; each block has its SAFETY note.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::io;
use std::os::windows::io::{FromRawHandle as _, OwnedHandle};

use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Security::{RevertToSelf, TOKEN_QUERY};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_OVERLAPPED, FILE_GENERIC_READ, FILE_WRITE_DATA, OPEN_EXISTING,
    SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::ImpersonateNamedPipeClient;
use windows_sys::Win32::System::Threading::{GetCurrentThread, OpenThreadToken};

use super::acl::{SecurityDescriptor, last_error, token_is_system_or_administrator, wide};

/// Full control for SYSTEM and Administrators; read and write data
/// (`FILE_GENERIC_READ | FILE_WRITE_DATA` = 0x12008b) for interactive
/// users. Protected (`P`): nothing is inherited.
pub const PIPE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;0x12008b;;;IU)";

/// The pipe's security descriptor, made once and used for every instance.
pub fn pipe_security() -> io::Result<SecurityDescriptor> {
    SecurityDescriptor::from_sddl(PIPE_SDDL)
}

/// Creates an instance of the pipe `name` with `security`'s DACL; `first`
/// fails (access denied) if any instance of that name exists already.
/// Must be called inside a tokio runtime.
pub fn create_instance(
    name: &OsStr,
    first: bool,
    security: &SecurityDescriptor,
) -> io::Result<NamedPipeServer> {
    let mut attributes = security.attributes();
    let mut options = ServerOptions::new();
    options
        .first_pipe_instance(first)
        .reject_remote_clients(true);
    // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor
    // (`security`) outlives the call; CreateNamedPipeW copies it.
    unsafe { options.create_with_security_attributes_raw(name, (&raw mut attributes).cast()) }
}

/// Opens the pipe as a client with the rights the DACL gives interactive
/// users, allowing the server to identify (not impersonate) it. Must be
/// called inside a tokio runtime.
pub fn open_client(name: &OsStr) -> io::Result<NamedPipeClient> {
    let wide_name = wide(name);
    // SAFETY: `wide_name` is NUL-terminated and outlives the call; no
    // security attributes or template handle are passed.
    let handle = unsafe {
        CreateFileW(
            wide_name.as_ptr(),
            FILE_GENERIC_READ | FILE_WRITE_DATA,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
            std::ptr::null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle is a pipe handle just opened for overlapped I/O,
    // as from_raw_handle requires, and ownership moves to the client.
    unsafe { NamedPipeClient::from_raw_handle(handle) }
}

/// Whether the client connected to `pipe` is SYSTEM or an elevated
/// Administrator. Impersonates it on this thread only for as long as it
/// takes to open its token; Windows allows that only after the server has
/// read from the pipe.
pub fn client_is_system_or_administrator(pipe: &NamedPipeServer) -> io::Result<bool> {
    use std::os::windows::io::AsRawHandle as _;

    // SAFETY: `pipe` is a connected server handle that lives across the call.
    if unsafe { ImpersonateNamedPipeClient(pipe.as_raw_handle() as HANDLE) } == 0 {
        return Err(last_error("cannot identify the pipe client"));
    }
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `token` is a valid out-pointer; opening "as self" (TRUE)
    // checks access against the agent's own token, not the client's.
    let opened = unsafe { OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, 1, &mut token) };
    let open_error = (opened == 0).then(|| last_error("cannot open the pipe client's token"));
    // SAFETY: ends the impersonation begun above on this thread. If it
    // fails the thread would go on as the client, so the process stops.
    if unsafe { RevertToSelf() } == 0 {
        std::process::abort();
    }
    if let Some(err) = open_error {
        return Err(err);
    }
    // SAFETY: OpenThreadToken succeeded, so `token` is an open handle
    // owned from here on.
    let token = unsafe { OwnedHandle::from_raw_handle(token) };
    token_is_system_or_administrator(&token)
}
