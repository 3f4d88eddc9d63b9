//! The Linux probe of `password_policy`: reads the PAM stack, libpwquality's
//! files and `/etc/login.defs` through [`Host`] (following links inside a
//! host root) and hands the text to the pure parsers. A file that cannot be
//! read becomes a fact, so the evaluator can say which one. Judges nothing.

use super::pam::PAM_CONFIG_DIRS;
use super::{
    DEBIAN_PASSWORD_STACK, FALLBACK_SERVICE, FileState, LOGIN_DEFS, LinuxPasswordFacts,
    MAX_SYMLINK_HOPS, PASSWORD_SERVICES, PWQUALITY_VENDOR_DROP_IN_DIR, PWQUALITY_VENDOR_FILE,
    PamEntryKind, PamFacts, PamFamily, PamStack, PwqualityFacts, REDHAT_PASSWORD_STACKS,
    ServiceScope, load_password_stack, parse_login_defs, pwquality, pwquality_file_order,
    read_pwquality_files,
};
use crate::sys::Host;

pub(super) fn probe(host: &Host) -> LinuxPasswordFacts {
    let login_defs = match read_in_root(host, LOGIN_DEFS) {
        Ok(Some(text)) => FileState::Read(parse_login_defs(&text)),
        Ok(None) => FileState::Absent,
        Err(error) => FileState::Unreadable(error),
    };
    LinuxPasswordFacts {
        login_defs,
        pwquality: probe_pwquality(host),
        pam: probe_pam(host),
    }
}

pub(super) fn probe_pwquality(host: &Host) -> PwqualityFacts {
    let mut unreadable = Vec::new();
    let drop_ins = match host.list_dir(pwquality::PWQUALITY_DROP_IN_DIR) {
        Ok(names) => names.unwrap_or_default(),
        Err(error) => {
            unreadable.push(format!("{}: {error}", pwquality::PWQUALITY_DROP_IN_DIR));
            Vec::new()
        }
    };
    let mut files = Vec::new();
    for path in pwquality_file_order(&drop_ins) {
        // libpwquality reads a directory named `x.conf` as an empty file, and
        // skips a dangling link (both checked with the library).
        if host.path(&path).is_dir() {
            continue;
        }
        match read_in_root(host, &path) {
            Ok(Some(text)) => files.push((path, text)),
            Ok(None) => {}
            Err(error) => unreadable.push(format!("{path}: {error}")),
        }
    }
    let mut vendor_files = Vec::new();
    if host.exists(PWQUALITY_VENDOR_FILE) {
        vendor_files.push(PWQUALITY_VENDOR_FILE.to_owned());
    }
    if let Ok(Some(names)) = host.list_dir(PWQUALITY_VENDOR_DROP_IN_DIR) {
        vendor_files.extend(
            names
                .iter()
                .filter(|name| name.ends_with(".conf"))
                .map(|name| format!("{PWQUALITY_VENDOR_DROP_IN_DIR}/{name}")),
        );
    }
    PwqualityFacts {
        config: read_pwquality_files(&files),
        unreadable,
        vendor_files,
    }
}

/// The stack of each password-changing service ([`PASSWORD_SERVICES`]),
/// found where libpam finds it: `/etc/pam.d/NAME`, then the distribution's
/// `/usr/lib/pam.d/NAME`, then (for a service every system has) the `other`
/// service's file, which libpam runs for a service without one.
pub(super) fn probe_pam(host: &Host) -> PamFacts {
    let exists = |path: &str| !matches!(read_in_root(host, path), Ok(None));
    let family = if exists(DEBIAN_PASSWORD_STACK) {
        PamFamily::Debian
    } else if REDHAT_PASSWORD_STACKS.iter().any(|path| exists(path)) {
        PamFamily::RedHat
    } else {
        PamFamily::Other
    };
    let service_file = |name: &str| {
        PAM_CONFIG_DIRS
            .iter()
            .map(|dir| format!("{dir}/{name}"))
            .find(|path| exists(path))
    };
    let fallback = service_file(FALLBACK_SERVICE);
    let mut roots: Vec<(String, String)> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    for (name, scope, _why) in PASSWORD_SERVICES {
        match (service_file(name), scope, &fallback) {
            (Some(path), _, _) => roots.push((name.to_owned(), path)),
            (None, ServiceScope::Always, Some(other)) => roots.push((
                format!("{name} (no file of its own: libpam runs {FALLBACK_SERVICE})"),
                other.clone(),
            )),
            (None, ServiceScope::Always, None) => missing.push(name),
            (None, ServiceScope::WhereInstalled, _) => {}
        }
    }
    if roots.is_empty() {
        return PamFacts::NoPasswordStack;
    }
    let mut load = |path: &str| read_in_root(host, path);
    let mut stacks: Vec<PamStack> = roots
        .into_iter()
        .map(|(service, root)| {
            let mut stack = load_password_stack(&root, &mut load);
            stack.service = Some(service);
            for entry in &mut stack.entries {
                if entry.skip_if_missing && entry.module_name() == Some("pam_pwquality.so") {
                    if let PamEntryKind::Module { path, .. } = &entry.kind {
                        entry.module_installed = Some(pam_module_installed(host, path));
                    }
                }
            }
            stack
        })
        .collect();
    // A service every system runs, with neither a file nor `other` to fall
    // back on: libpam refuses every change through it, which is not for
    // this rule to call compliant, so its stack cannot be judged.
    for name in missing {
        stacks.push(PamStack {
            service: Some(name.to_owned()),
            root: format!("/etc/pam.d/{name}"),
            entries: Vec::new(),
            files_read: Vec::new(),
            problems: vec![format!(
                "the PAM service {name} has no file, and there is no {FALLBACK_SERVICE} to fall back on"
            )],
        });
    }
    PamFacts::Stacks { family, stacks }
}

/// Reads a file that may be absent. Under a prepared host root, a symbolic
/// link with an absolute target (Fedora's `/etc/pam.d/system-auth ->
/// /etc/authselect/system-auth`) is followed inside the root, not on the
/// machine running the agent.
pub(crate) fn read_in_root(host: &Host, absolute: &str) -> Result<Option<String>, String> {
    let mut path = absolute.to_owned();
    if !host.is_live_system() {
        for _ in 0..MAX_SYMLINK_HOPS {
            let Ok(target) = std::fs::read_link(host.path(&path)) else {
                break;
            };
            let target = target.to_string_lossy().into_owned();
            path = if target.starts_with('/') {
                target
            } else {
                let parent = path.rsplit_once('/').map_or("", |(dir, _)| dir);
                normalize_absolute(&format!("{parent}/{target}"))
            };
        }
    }
    host.read_optional(&path).map_err(|error| {
        if path == absolute {
            error.to_string()
        } else {
            format!("{path} (the link's target): {error}")
        }
    })
}

/// Resolves `.` and `..` in an absolute path without touching the disk.
pub(super) fn normalize_absolute(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether a PAM module file exists where libpam would load it from: its
/// own path when absolute, else the distributions' security directories
/// (Debian's multiarch `/usr/lib/<triplet>/security`, Fedora's
/// `/usr/lib64/security`).
pub(crate) fn pam_module_installed(host: &Host, module: &str) -> bool {
    if module.starts_with('/') {
        return host.exists(module);
    }
    let mut directories: Vec<String> = [
        "/usr/lib64/security",
        "/lib64/security",
        "/usr/lib/security",
        "/lib/security",
    ]
    .iter()
    .map(|d| (*d).to_owned())
    .collect();
    for base in ["/usr/lib", "/lib"] {
        if let Ok(Some(names)) = host.list_dir(base) {
            directories.extend(
                names
                    .iter()
                    .filter(|name| name.contains("-linux-"))
                    .map(|name| format!("{base}/{name}/security")),
            );
        }
    }
    directories
        .iter()
        .any(|dir| host.exists(&format!("{dir}/{module}")))
}
