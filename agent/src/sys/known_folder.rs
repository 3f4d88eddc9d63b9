//! `%ProgramData%` as Windows itself knows it (`SHGetKnownFolderPath`,
//! `FOLDERID_ProgramData`), not as an environment variable says: a service's
//! environment is whatever its Service Control Manager built (Wine's puts
//! `C:\users\Public` there), and the config and state must be where the
//! installer and IT look for them.

use std::ffi::OsString;
use std::os::windows::ffi::OsStringExt as _;
use std::path::PathBuf;

use windows_sys::Win32::System::Com::CoTaskMemFree;
use windows_sys::Win32::UI::Shell::{FOLDERID_ProgramData, KF_FLAG_DEFAULT, SHGetKnownFolderPath};

/// The ProgramData folder, or `None` if Windows cannot say.
#[allow(unsafe_code)] // one shell call and its buffer; each block says why it is sound
pub fn program_data() -> Option<PathBuf> {
    let mut path: *mut u16 = std::ptr::null_mut();
    // SAFETY: FOLDERID_ProgramData is a valid GUID for the call's lifetime;
    // `path` receives a buffer the shell allocates (even on failure), which
    // is freed below with CoTaskMemFree as the API requires.
    let result = unsafe {
        SHGetKnownFolderPath(
            &FOLDERID_ProgramData,
            KF_FLAG_DEFAULT as u32,
            std::ptr::null_mut(),
            &mut path,
        )
    };
    let folder = (result == 0 && !path.is_null()).then(|| {
        let mut length = 0;
        // SAFETY: on success `path` is a NUL-terminated UTF-16 string, so
        // every unit up to and including the NUL is readable.
        while unsafe { *path.add(length) } != 0 {
            length += 1;
        }
        // SAFETY: the `length` units before the NUL were just read.
        let units = unsafe { std::slice::from_raw_parts(path, length) };
        PathBuf::from(OsString::from_wide(units))
    });
    // SAFETY: `path` came from SHGetKnownFolderPath (or is null, which
    // CoTaskMemFree accepts) and is not used afterwards.
    unsafe { CoTaskMemFree(path.cast()) };
    folder
}
