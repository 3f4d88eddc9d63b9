//! The present USB device nodes, from SetupAPI and the configuration
//! manager (setupapi.dll, cfgmgr32.dll): what `usb_storage`'s Windows probe
//! reads. Only reads; every `unsafe` block says why it is sound.
//!
//! `SetupDiGetClassDevsW` with the enumerator `USB` and
//! `DIGCF_PRESENT | DIGCF_ALLCLASSES` lists every node the USB bus driver
//! created for a connected device: whole devices and, for a composite
//! device, one node per interface (`…&MI_00`). Device Manager shows the same
//! tree. A node is taken as it is; which ones offer mass storage is decided
//! from its compatible ids by the caller.
// Every function here is a Win32 call; each block has its SAFETY note.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::ptr::{null, null_mut};

use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    CM_Get_DevNode_Status, CM_Get_Device_IDW, CM_Get_Parent, CR_SUCCESS, DIGCF_ALLCLASSES,
    DIGCF_PRESENT, DN_STARTED, HDEVINFO, MAX_DEVICE_ID_LEN, SETUP_DI_REGISTRY_PROPERTY,
    SP_DEVINFO_DATA, SPDRP_COMPATIBLEIDS, SPDRP_DEVICEDESC, SPDRP_FRIENDLYNAME,
    SetupDiDestroyDeviceInfoList, SetupDiEnumDeviceInfo, SetupDiGetClassDevsW,
    SetupDiGetDeviceInstanceIdW, SetupDiGetDevicePropertyW, SetupDiGetDeviceRegistryPropertyW,
};
use windows_sys::Win32::Devices::Properties::{
    DEVPKEY_Device_LastArrivalDate, DEVPROP_TYPE_FILETIME, DEVPROPTYPE,
};
use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_DATA, ERROR_NO_MORE_ITEMS, GetLastError,
    INVALID_HANDLE_VALUE,
};

use super::registry_value::{decode_multi_sz, wide_to_string};

/// One present node of the USB bus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsbNode {
    pub instance_id: String,
    pub parent_instance_id: Option<String>,
    /// `SPDRP_COMPATIBLEIDS`; empty when the node has none.
    pub compatible_ids: Vec<String>,
    /// The friendly name, else the device description.
    pub description: Option<String>,
    /// Whether its driver runs (`DN_STARTED`); `None` when unreadable.
    pub started: Option<bool>,
    /// `DEVPKEY_Device_LastArrivalDate` as FILETIME ticks.
    pub arrived: Option<u64>,
}

/// A device information set, destroyed when dropped.
struct DeviceInfoSet(HDEVINFO);

impl Drop for DeviceInfoSet {
    fn drop(&mut self) {
        // SAFETY: the handle came from a successful SetupDiGetClassDevsW and
        // is destroyed only here, once.
        unsafe { SetupDiDestroyDeviceInfoList(self.0) };
    }
}

/// The present nodes of the USB bus.
pub fn present_usb_nodes() -> io::Result<Vec<UsbNode>> {
    let enumerator: Vec<u16> = "USB\0".encode_utf16().collect();
    // SAFETY: `enumerator` is NUL-terminated and outlives the call; a null
    // class GUID and window are allowed with DIGCF_ALLCLASSES.
    let set = unsafe {
        SetupDiGetClassDevsW(
            null(),
            enumerator.as_ptr(),
            null_mut(),
            DIGCF_PRESENT | DIGCF_ALLCLASSES,
        )
    };
    if set == INVALID_HANDLE_VALUE as HDEVINFO {
        return Err(last_error("SetupDiGetClassDevsW"));
    }
    let set = DeviceInfoSet(set);
    let mut nodes = Vec::new();
    for index in 0.. {
        let mut data = SP_DEVINFO_DATA {
            cbSize: size_of::<SP_DEVINFO_DATA>() as u32,
            // SAFETY: SP_DEVINFO_DATA is plain data (integers and a GUID),
            // for which all zeroes is a valid value.
            ..unsafe { std::mem::zeroed() }
        };
        // SAFETY: `set` is a live device information set and `data` has its
        // cbSize set, as SetupDiEnumDeviceInfo requires.
        if unsafe { SetupDiEnumDeviceInfo(set.0, index, &mut data) } == 0 {
            // SAFETY: reads the calling thread's last error, set just above.
            if unsafe { GetLastError() } == ERROR_NO_MORE_ITEMS {
                break;
            }
            return Err(last_error("SetupDiEnumDeviceInfo"));
        }
        nodes.push(read_node(&set, &data)?);
    }
    Ok(nodes)
}

fn read_node(set: &DeviceInfoSet, data: &SP_DEVINFO_DATA) -> io::Result<UsbNode> {
    let mut id = [0u16; MAX_DEVICE_ID_LEN as usize];
    // SAFETY: `id` holds MAX_DEVICE_ID_LEN u16s, the size passed; `data` was
    // filled by SetupDiEnumDeviceInfo for this set.
    let ok = unsafe {
        SetupDiGetDeviceInstanceIdW(set.0, data, id.as_mut_ptr(), MAX_DEVICE_ID_LEN, null_mut())
    };
    if ok == 0 {
        return Err(last_error("SetupDiGetDeviceInstanceIdW"));
    }
    let description = registry_property(set, data, SPDRP_FRIENDLYNAME)?
        .or(registry_property(set, data, SPDRP_DEVICEDESC)?)
        .and_then(|strings| strings.into_iter().next());
    Ok(UsbNode {
        instance_id: wide_to_string(&id),
        parent_instance_id: parent_instance_id(data.DevInst),
        compatible_ids: registry_property(set, data, SPDRP_COMPATIBLEIDS)?.unwrap_or_default(),
        description,
        started: started(data.DevInst),
        arrived: last_arrival(set, data),
    })
}

/// A REG_SZ or REG_MULTI_SZ device property as its strings; `None` when
/// the node does not have it.
fn registry_property(
    set: &DeviceInfoSet,
    data: &SP_DEVINFO_DATA,
    property: SETUP_DI_REGISTRY_PROPERTY,
) -> io::Result<Option<Vec<String>>> {
    let mut buffer = vec![0u8; 1024];
    loop {
        let mut required = 0u32;
        // SAFETY: `buffer` is writable for the length passed; the type
        // pointer may be null.
        let ok = unsafe {
            SetupDiGetDeviceRegistryPropertyW(
                set.0,
                data,
                property,
                null_mut(),
                buffer.as_mut_ptr(),
                buffer.len() as u32,
                &mut required,
            )
        };
        if ok != 0 {
            break;
        }
        // SAFETY: reads the calling thread's last error, set just above.
        match unsafe { GetLastError() } {
            // The node has no such property.
            ERROR_INVALID_DATA => return Ok(None),
            ERROR_INSUFFICIENT_BUFFER if required as usize > buffer.len() => {
                buffer.resize(required as usize, 0);
            }
            _ => return Err(last_error("SetupDiGetDeviceRegistryPropertyW")),
        }
    }
    Ok(Some(decode_multi_sz(&buffer)))
}

fn started(devinst: u32) -> Option<bool> {
    let (mut status, mut problem) = (0u32, 0u32);
    // SAFETY: both out-pointers are valid u32s; `devinst` came from
    // SetupDiEnumDeviceInfo.
    let result = unsafe { CM_Get_DevNode_Status(&mut status, &mut problem, devinst, 0) };
    (result == CR_SUCCESS).then_some(status & DN_STARTED != 0)
}

fn parent_instance_id(devinst: u32) -> Option<String> {
    let mut parent = 0u32;
    // SAFETY: `parent` is a valid out-pointer; `devinst` is a live node.
    if unsafe { CM_Get_Parent(&mut parent, devinst, 0) } != CR_SUCCESS {
        return None;
    }
    let mut id = [0u16; MAX_DEVICE_ID_LEN as usize + 1];
    // SAFETY: `id` holds MAX_DEVICE_ID_LEN + 1 u16s and MAX_DEVICE_ID_LEN is
    // passed, so the id and its NUL fit.
    let result = unsafe { CM_Get_Device_IDW(parent, id.as_mut_ptr(), MAX_DEVICE_ID_LEN, 0) };
    (result == CR_SUCCESS).then(|| wide_to_string(&id))
}

fn last_arrival(set: &DeviceInfoSet, data: &SP_DEVINFO_DATA) -> Option<u64> {
    let mut kind: DEVPROPTYPE = 0;
    let mut value = [0u8; 8];
    let mut required = 0u32;
    // SAFETY: `value` is writable for the 8 bytes passed, the size of a
    // FILETIME; the property key is a static.
    let ok = unsafe {
        SetupDiGetDevicePropertyW(
            set.0,
            data,
            &DEVPKEY_Device_LastArrivalDate,
            &mut kind,
            value.as_mut_ptr(),
            value.len() as u32,
            &mut required,
            0,
        )
    };
    (ok != 0 && kind == DEVPROP_TYPE_FILETIME).then(|| u64::from_le_bytes(value))
}

fn last_error(call: &str) -> io::Error {
    let err = io::Error::last_os_error();
    io::Error::new(err.kind(), format!("{call} failed: {err}"))
}
