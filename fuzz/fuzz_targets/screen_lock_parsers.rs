//! What the Linux screen-lock probe and enforcer read: logind session
//! properties, passwd, gsettings output (as the probe judges it),
//! `/proc/<pid>/comm` and cgroup lines, a dconf profile (read to find its
//! system databases, and rewritten by the enforcer), and KDE's
//! kscreenlockerrc (parsed, resolved over the system and user files, and
//! rewritten by the enforcer). The agent reads dconf's keyfiles only through
//! gsettings, so no keyfile parser of its own exists to fuzz.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::screen_lock::enforce::{
    kscreenlockerrc_with_daemon_group, profile_with_database,
};
use palisade_agent::checks::screen_lock::{
    cgroup_contains_unit, classify_gsettings_output, dconf_profile_system_databases,
    desktop_family, is_display_server_process, is_person_hive, parse_gsettings_value,
    parse_kscreenlockerrc, parse_logind_session, parse_passwd, resolve_kde_settings,
};

fuzz_target!(|text: &str| {
    let _ = parse_logind_session(text);
    let _ = parse_passwd(text);
    let _ = desktop_family(text);
    let _ = is_display_server_process(text);
    let _ = is_person_hive(text);
    let _ = cgroup_contains_unit(text, "session-2.scope");
    let _ = parse_gsettings_value(text);
    let _ = classify_gsettings_output(Some(0), text, "");
    let _ = classify_gsettings_output(Some(1), "", text);
    let _ = dconf_profile_system_databases(text);
    let _ = profile_with_database(Some(text), "system-db:local");
    let kde = parse_kscreenlockerrc(text);
    let _ = resolve_kde_settings(&[
        ("/etc/xdg/kscreenlockerrc", Some(&kde)),
        ("/home/alice/.config/kscreenlockerrc", Some(&kde)),
    ]);
    let _ = kscreenlockerrc_with_daemon_group(Some(text), 15);
});
