//! The Windows registry, read and written through winreg (a safe wrapper
//! over the Win32 registry API), so no `unsafe` is needed here.
//!
//! Reads answer `Ok(None)` for a key or value that is not there, so a probe
//! can tell "absent" (which has a meaning: no policy set) from "could not
//! read" (which must make a verdict `unknown`). A value of another type than
//! asked for is an error, never a conversion: a REG_SZ "900" where a
//! REG_DWORD belongs is not what Windows reads either.

use std::io;

use winreg::RegKey;
use winreg::enums::{
    HKEY_LOCAL_MACHINE, HKEY_USERS, KEY_QUERY_VALUE, KEY_READ, KEY_SET_VALUE, RegType,
};

/// The two hives the rules read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hive {
    /// `HKEY_LOCAL_MACHINE`: machine-wide settings and policy.
    LocalMachine,
    /// `HKEY_USERS`: every loaded user hive, one subkey per SID.
    Users,
}

impl Hive {
    fn key(self) -> RegKey {
        RegKey::predef(match self {
            Self::LocalMachine => HKEY_LOCAL_MACHINE,
            Self::Users => HKEY_USERS,
        })
    }

    /// The hive's name as `reg.exe` and the documentation write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::LocalMachine => "HKLM",
            Self::Users => "HKU",
        }
    }
}

fn absent_is_none<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

fn open(hive: Hive, path: &str, access: u32) -> io::Result<Option<RegKey>> {
    absent_is_none(hive.key().open_subkey_with_flags(path, access))
}

fn expect_type(
    key: &RegKey,
    name: &str,
    wanted: &[RegType],
    wanted_name: &str,
) -> io::Result<bool> {
    let Some(raw) = absent_is_none(key.get_raw_value(name))? else {
        return Ok(false);
    };
    if wanted.contains(&raw.vtype) {
        Ok(true)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name} is {:?}, not {wanted_name}", raw.vtype),
        ))
    }
}

/// A REG_DWORD, or `None` when the key or the value is absent.
pub fn read_dword(hive: Hive, path: &str, name: &str) -> io::Result<Option<u32>> {
    let Some(key) = open(hive, path, KEY_QUERY_VALUE)? else {
        return Ok(None);
    };
    if !expect_type(&key, name, &[RegType::REG_DWORD], "REG_DWORD")? {
        return Ok(None);
    }
    key.get_value::<u32, _>(name).map(Some)
}

/// A REG_SZ or REG_EXPAND_SZ (unexpanded), or `None` when absent.
pub fn read_string(hive: Hive, path: &str, name: &str) -> io::Result<Option<String>> {
    let Some(key) = open(hive, path, KEY_QUERY_VALUE)? else {
        return Ok(None);
    };
    if !expect_type(
        &key,
        name,
        &[RegType::REG_SZ, RegType::REG_EXPAND_SZ],
        "REG_SZ",
    )? {
        return Ok(None);
    }
    key.get_value::<String, _>(name).map(Some)
}

/// The names of a key's subkeys (empty when the key is absent).
pub fn subkeys(hive: Hive, path: &str) -> io::Result<Vec<String>> {
    let Some(key) = open(hive, path, KEY_READ)? else {
        return Ok(Vec::new());
    };
    key.enum_keys().collect()
}

/// Sets a REG_DWORD, creating the key if needed.
pub fn write_dword(hive: Hive, path: &str, name: &str, value: u32) -> io::Result<()> {
    let (key, _) = hive.key().create_subkey_with_flags(path, KEY_SET_VALUE)?;
    key.set_value(name, &value)
}

/// Deletes a value; one already absent is not an error.
pub fn delete_value(hive: Hive, path: &str, name: &str) -> io::Result<()> {
    let Some(key) = open(hive, path, KEY_SET_VALUE)? else {
        return Ok(());
    };
    absent_is_none(key.delete_value(name)).map(|_| ())
}

/// When a key was last written (FILETIME ticks: 100 ns since 1601), or
/// `None` when the key is absent.
pub fn key_last_write_time(hive: Hive, path: &str) -> io::Result<Option<u64>> {
    let Some(key) = open(hive, path, KEY_QUERY_VALUE)? else {
        return Ok(None);
    };
    let written = key.query_info()?.last_write_time;
    Ok(Some(
        (u64::from(written.dwHighDateTime) << 32) | u64::from(written.dwLowDateTime),
    ))
}
