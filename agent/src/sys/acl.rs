//! Windows security descriptors for the agent's own objects: directories
//! created with an ACL from SDDL text in the same call (`CreateDirectoryW`
//! with `SECURITY_ATTRIBUTES`), an object's owner and DACL read back as
//! SDDL, the account the process runs as, and whether a token is SYSTEM or
//! an Administrator. What the SDDL *means* is decided by the pure
//! [`super::sddl`].
//!
//! Every buffer Windows allocates here (`LocalAlloc`ed descriptors and
//! strings) is owned by a [`LocalBox`] and freed once; every handle is
//! closed by [`OwnedHandle`]. Each `unsafe` block says why it is sound.

use std::ffi::{OsStr, c_void};
use std::io;
use std::os::windows::ffi::OsStrExt as _;
use std::os::windows::io::{AsRawHandle as _, FromRawHandle as _, OwnedHandle};
use std::path::Path;

use windows_sys::Win32::Foundation::{BOOL, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW, SDDL_REVISION_1,
    SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    CheckTokenMembership, CreateWellKnownSid, DACL_SECURITY_INFORMATION, GetTokenInformation,
    OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES,
    SECURITY_MAX_SID_SIZE, TOKEN_QUERY, TOKEN_USER, TokenUser, WELL_KNOWN_SID_TYPE,
    WinBuiltinAdministratorsSid, WinLocalSystemSid,
};
use windows_sys::Win32::Storage::FileSystem::CreateDirectoryW;
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

/// A security descriptor built from SDDL, for `SECURITY_ATTRIBUTES`.
#[derive(Debug)]
pub struct SecurityDescriptor(LocalBox);

impl SecurityDescriptor {
    /// Parses `sddl` with `ConvertStringSecurityDescriptorToSecurityDescriptorW`.
    pub fn from_sddl(sddl: &str) -> io::Result<Self> {
        let text = wide(OsStr::new(sddl));
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `text` is NUL-terminated and outlives the call;
        // `descriptor` is a valid out-pointer, filled with a LocalAlloc'ed
        // self-relative descriptor on success (owned below); the size
        // out-pointer may be null.
        #[allow(unsafe_code)]
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 || descriptor.is_null() {
            return Err(last_error(&format!("cannot read the SDDL {sddl:?}")));
        }
        Ok(Self(LocalBox(descriptor)))
    }

    /// `SECURITY_ATTRIBUTES` pointing at this descriptor, not inheritable;
    /// valid while `self` lives.
    pub fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0.0,
            bInheritHandle: 0,
        }
    }
}

/// Creates the directory `path` (its parent must exist) with the ACL in
/// `sddl`, in one call: there is no moment when it exists with the ACL
/// inherited from its parent, which another user could use to plant a
/// file in it. An existing directory is `AlreadyExists`.
pub fn create_dir_with_sddl(path: &Path, sddl: &str) -> io::Result<()> {
    let descriptor = SecurityDescriptor::from_sddl(sddl)?;
    let attributes = descriptor.attributes();
    let name = wide(path.as_os_str());
    // SAFETY: `name` is NUL-terminated; `attributes` points at a valid
    // descriptor that `descriptor` keeps alive until after the call.
    #[allow(unsafe_code)]
    let ok = unsafe { CreateDirectoryW(name.as_ptr(), &attributes) };
    if ok == 0 {
        return Err(last_error(&format!("cannot create {}", path.display())));
    }
    Ok(())
}

/// The owner and DACL of a file or directory, as SDDL.
pub fn read_sddl(path: &Path) -> io::Result<String> {
    let name = wide(path.as_os_str());
    let wanted = OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION;
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `name` is NUL-terminated; the owner, group, DACL and SACL
    // out-pointers may be null when the whole descriptor is asked for
    // through the last one, which is filled with a LocalAlloc'ed buffer on
    // success (owned below).
    #[allow(unsafe_code)]
    let status = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            wanted,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if status != 0 || descriptor.is_null() {
        let err = io::Error::from_raw_os_error(status as i32);
        return Err(io::Error::new(
            err.kind(),
            format!("cannot read the ACL of {}: {err}", path.display()),
        ));
    }
    let descriptor = LocalBox(descriptor);
    let mut text: *mut u16 = std::ptr::null_mut();
    let mut length = 0_u32;
    // SAFETY: `descriptor` is the valid descriptor read above; `text` and
    // `length` are valid out-pointers; `text` is filled with a LocalAlloc'ed
    // NUL-terminated string on success (owned below).
    #[allow(unsafe_code)]
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            descriptor.0,
            SDDL_REVISION_1,
            wanted,
            &mut text,
            &mut length,
        )
    };
    if ok == 0 || text.is_null() {
        return Err(last_error(&format!(
            "cannot write the ACL of {} as SDDL",
            path.display()
        )));
    }
    let text = LocalBox(text.cast());
    // SAFETY: `text` holds a NUL-terminated UTF-16 string from the call.
    #[allow(unsafe_code)]
    let string = unsafe { from_wide_nul(text.0.cast()) };
    Ok(string)
}

/// The SID of the account this process runs as, e.g. `S-1-5-18` for
/// SYSTEM.
pub fn current_user_sid() -> io::Result<String> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of the current process needs no closing;
    // `token` is a valid out-pointer, owned below on success.
    #[allow(unsafe_code)]
    let ok = unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) };
    if ok == 0 {
        return Err(last_error("cannot open the process token"));
    }
    // SAFETY: `token` is a handle the call above opened and nobody else
    // owns.
    #[allow(unsafe_code)]
    let token = unsafe { OwnedHandle::from_raw_handle(token) };
    // TOKEN_USER plus the SID it points into; SIDs are at most 68 bytes.
    // u64 elements keep the buffer aligned for TOKEN_USER's pointer.
    let mut buffer = [0_u64; 16];
    let mut needed = 0_u32;
    // SAFETY: `buffer` is writable for its full size, which is given, and
    // aligned for TOKEN_USER; `needed` is a valid out-pointer.
    #[allow(unsafe_code)]
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            buffer.as_mut_ptr().cast(),
            std::mem::size_of_val(&buffer) as u32,
            &mut needed,
        )
    };
    if ok == 0 {
        return Err(last_error("cannot read the process token's user"));
    }
    // SAFETY: on success the buffer starts with a TOKEN_USER whose SID
    // pointer points into the same buffer, which lives until after the
    // conversion.
    #[allow(unsafe_code)]
    let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    sid_string(sid)
}

/// Whether `token` (an impersonation token, e.g. a pipe client's) is
/// SYSTEM or a member of Administrators with the group enabled; for a
/// UAC-filtered administrator (not elevated) the group is deny-only, so
/// this is false, as it should be.
pub fn token_is_system_or_administrator(token: &OwnedHandle) -> io::Result<bool> {
    for kind in [WinLocalSystemSid, WinBuiltinAdministratorsSid] {
        let mut sid = well_known_sid(kind)?;
        let mut member: BOOL = 0;
        // SAFETY: `token` is an open token handle; `sid` is a valid SID
        // that lives across the call; `member` is a valid out-pointer.
        #[allow(unsafe_code)]
        let ok = unsafe {
            CheckTokenMembership(token.as_raw_handle(), sid.as_mut_ptr().cast(), &mut member)
        };
        if ok == 0 {
            return Err(last_error("cannot check the client's token"));
        }
        if member != 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A well-known SID in a buffer of the largest SID's size.
fn well_known_sid(kind: WELL_KNOWN_SID_TYPE) -> io::Result<[u8; SECURITY_MAX_SID_SIZE as usize]> {
    let mut sid = [0_u8; SECURITY_MAX_SID_SIZE as usize];
    let mut size = SECURITY_MAX_SID_SIZE;
    // SAFETY: `sid` is writable for `size` bytes; no domain SID is needed
    // for these two built-in SIDs.
    #[allow(unsafe_code)]
    let ok = unsafe {
        CreateWellKnownSid(
            kind,
            std::ptr::null_mut(),
            sid.as_mut_ptr().cast(),
            &mut size,
        )
    };
    if ok == 0 {
        return Err(last_error("cannot build a well-known SID"));
    }
    Ok(sid)
}

/// A SID as `S-1-…` text.
fn sid_string(sid: PSID) -> io::Result<String> {
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is a valid SID (the caller's buffer keeps it alive);
    // `text` is filled with a LocalAlloc'ed NUL-terminated string on
    // success (owned below).
    #[allow(unsafe_code)]
    let ok = unsafe { ConvertSidToStringSidW(sid, &mut text) };
    if ok == 0 || text.is_null() {
        return Err(last_error("cannot write a SID as text"));
    }
    let text = LocalBox(text.cast());
    // SAFETY: `text` holds a NUL-terminated UTF-16 string from the call.
    #[allow(unsafe_code)]
    let string = unsafe { from_wide_nul(text.0.cast()) };
    Ok(string)
}

/// A buffer Windows allocated with `LocalAlloc`, freed once on drop.
#[derive(Debug)]
struct LocalBox(*mut c_void);

impl Drop for LocalBox {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a Windows call that allocates with
        // LocalAlloc and hands ownership to the caller, and is freed only
        // here.
        #[allow(unsafe_code)]
        unsafe {
            LocalFree(self.0);
        }
    }
}

// SAFETY: the buffer is plain memory owned by this value alone; nothing in
// it is tied to the thread that allocated it.
#[allow(unsafe_code)]
unsafe impl Send for LocalBox {}
// SAFETY: as above; the pointer is only read through `&self`.
#[allow(unsafe_code)]
unsafe impl Sync for LocalBox {}

/// `text` as UTF-16 with a terminating NUL.
pub(super) fn wide(text: &OsStr) -> Vec<u16> {
    text.encode_wide().chain(std::iter::once(0)).collect()
}

/// Reads a NUL-terminated UTF-16 string.
///
/// # Safety
/// `text` must point at a readable NUL-terminated UTF-16 string.
#[allow(unsafe_code)]
unsafe fn from_wide_nul(text: *const u16) -> String {
    let mut length = 0;
    // SAFETY: the caller promises a NUL within the readable string.
    while unsafe { *text.add(length) } != 0 {
        length += 1;
    }
    // SAFETY: the `length` units before the NUL were just read.
    let units = unsafe { std::slice::from_raw_parts(text, length) };
    String::from_utf16_lossy(units)
}

/// The calling thread's last Win32 error, with what was being done.
pub(super) fn last_error(action: &str) -> io::Error {
    let err = io::Error::last_os_error();
    io::Error::new(err.kind(), format!("{action}: {err}"))
}
