//! The Linux evaluator's evidence: what each USB device and each
//! preventive control looked like, as the report shows them. Pure.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{ModuleRules, PreventiveControls, UsbGuardState};

pub(super) fn module_rules_evidence(module: &str, rules: &ModuleRules) -> Value {
    json!({
        "install": rules.install.as_ref().map(|l| l.value.clone()),
        "install_file": rules.install.as_ref().map(|l| l.file.clone()),
        "install_disables_loading": rules.install_disables_loading(),
        "blacklisted_in": rules.blacklisted_in,
        "note": if rules.blacklisted_in.is_empty() || rules.install_disables_loading() {
            Value::Null
        } else {
            json!(format!(
                "a blacklist line alone does not stop {module}: kmod still loads it by name or \
                 as a dependency (usb-storage is one of uas)"
            ))
        },
    })
}

/// The preventive controls as evidence, with the one-line descriptions of
/// the ones that are in place.
pub(super) fn controls_evidence(controls: &PreventiveControls) -> (Value, Vec<String>) {
    let mut in_place = Vec::new();
    let modprobe = match &controls.modprobe {
        Ok(config) => {
            for (module, rules) in [("usb-storage", &config.usb_storage), ("uas", &config.uas)] {
                if let (true, Some(line)) = (rules.install_disables_loading(), &rules.install) {
                    in_place.push(format!(
                        "{module} disabled by `install {module} {}` in {}",
                        line.value, line.file
                    ));
                }
            }
            json!({
                "usb_storage": module_rules_evidence("usb-storage", &config.usb_storage),
                "uas": module_rules_evidence("uas", &config.uas),
            })
        }
        Err(reason) => json!(format!("unknown: {reason}")),
    };
    let storage_modules_in =
        |modules: &Result<Option<BTreeSet<String>>, String>, source: &str| match modules {
            Ok(Some(modules)) => json!({
                "usb_storage": modules.contains("usb_storage"),
                "uas": modules.contains("uas"),
            }),
            Ok(None) => json!(format!("unknown: {source} does not exist")),
            Err(reason) => json!(format!("unknown: {reason}")),
        };
    let loaded = storage_modules_in(&controls.loaded_modules, "/proc/modules");
    let in_kernel = storage_modules_in(&controls.sys_module, "/sys/module");
    let usbguard = match &controls.usbguard {
        UsbGuardState::Active => {
            in_place.push("USBGuard is active".into());
            json!({ "service": "active" })
        }
        UsbGuardState::NotActive(state) => json!({ "service": state }),
        UsbGuardState::Unknown(reason) => json!({ "service": format!("unknown: {reason}") }),
        UsbGuardState::NotChecked {
            daemon_config_present,
        } => json!({
            "service": "not checked: a host root has no running services",
            "daemon_config_present": daemon_config_present,
        }),
    };
    (
        json!({
            "modprobe": modprobe,
            "modules_loaded": loaded,
            "modules_in_kernel": in_kernel,
            "usbguard": usbguard,
        }),
        in_place,
    )
}
