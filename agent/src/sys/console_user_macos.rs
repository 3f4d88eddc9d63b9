//! Who sits at a Mac's console: the user whose graphical session owns the
//! screen, read from configd's dynamic store key `State:/Users/ConsoleUser`
//! with `scutil` (the store `SCDynamicStoreCopyConsoleUser` reads, Apple's
//! Technical Q&A QA1133). Per-user settings (the screen lock) are read in
//! that user's context, since a root daemon's own reads see nothing.
//!
//! The parser is pure and compiled on every OS, so Linux CI tests it on the
//! captured output in `agent/tests/fixtures/macos/console_user/`; only
//! [`console_user`], which runs `scutil`, is macOS-only. Nothing here
//! decides compliance.

/// A person logged in at the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    /// The short name (`Name`), which `sudo -u` takes.
    pub name: String,
    /// `UID`, which `launchctl asuser` takes.
    pub uid: u32,
}

/// What the dynamic store says about the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleState {
    User(ConsoleUser),
    /// No one is logged in at the console: the login window owns it
    /// (`Name : loginwindow`, or a root-owned UID 0 entry), or configd has no
    /// such key at all (`No such key`, before anyone logged in since boot).
    NoOne(String),
}

/// The login window's pseudo user in the store (`loginwindow.app` writes it
/// when nobody is logged in; scripts filter it the same way).
const LOGIN_WINDOW: &str = "loginwindow";

/// Reads `scutil <<< "show State:/Users/ConsoleUser"`. Only the top level
/// of the printed dictionary counts: `SessionInfo` lists every GUI session,
/// including users switched away from with fast user switching, whose
/// screens are behind the login window.
pub fn parse_scutil_console_user(text: &str) -> Result<ConsoleState, String> {
    let trimmed = text.trim();
    if trimmed.contains("No such key") {
        return Ok(ConsoleState::NoOne(
            "configd has no console user (no such key)".into(),
        ));
    }
    if !trimmed.starts_with("<dictionary>") {
        return Err(format!(
            "scutil printed no dictionary for State:/Users/ConsoleUser: {:?}",
            first_line(trimmed)
        ));
    }
    let mut depth = 0usize;
    let mut name = None;
    let mut uid = None;
    for line in trimmed.lines() {
        let line = line.trim();
        if line == "}" {
            depth = depth.saturating_sub(1);
            continue;
        }
        if depth == 1 {
            if let Some((key, value)) = line.split_once(" : ") {
                match key.trim() {
                    "Name" => name = Some(value.trim().to_owned()),
                    "UID" => uid = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
        }
        if line.ends_with('{') {
            depth += 1;
        }
    }
    let Some(name) = name.filter(|name| !name.is_empty()) else {
        return Ok(ConsoleState::NoOne(
            "the console user entry has no Name".into(),
        ));
    };
    if name == LOGIN_WINDOW {
        return Ok(ConsoleState::NoOne(
            "the login window owns the console (no one is logged in)".into(),
        ));
    }
    let uid = match uid.as_deref().map(str::parse::<u32>) {
        Some(Ok(uid)) => uid,
        Some(Err(_)) | None => {
            return Err(format!(
                "the console user {name} has no numeric UID: {uid:?}"
            ));
        }
    };
    if uid == 0 {
        // root at the console is the login window's session, not a person's.
        return Ok(ConsoleState::NoOne(format!(
            "{name} (UID 0) owns the console, not a person's session"
        )));
    }
    Ok(ConsoleState::User(ConsoleUser { name, uid }))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Asks configd who is at the console.
#[cfg(target_os = "macos")]
pub fn console_user(host: &super::Host) -> Result<ConsoleState, String> {
    let command =
        super::CommandSpec::new("/usr/sbin/scutil").stdin("show State:/Users/ConsoleUser\n");
    let output = host.run(&command).map_err(|err| err.to_string())?;
    if !output.success() {
        return Err(format!(
            "`scutil` exited with {:?}: {}",
            output.exit_code,
            output.stderr.trim()
        ));
    }
    parse_scutil_console_user(&output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/macos/console_user/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    #[test]
    fn a_logged_in_user_is_named_with_their_uid() {
        let state = parse_scutil_console_user(&fixture("scutil-berglund-2018.txt")).unwrap();
        assert_eq!(
            state,
            ConsoleState::User(ConsoleUser {
                name: "erikberglund".into(),
                uid: 501
            })
        );
    }

    #[test]
    fn only_the_top_level_entry_counts_with_fast_user_switching() {
        // The second session (jrdoe, not on console) must not be chosen.
        let state = parse_scutil_console_user(&fixture("scutil-fleet-two-sessions.txt")).unwrap();
        assert_eq!(
            state,
            ConsoleState::User(ConsoleUser {
                name: "jandoe".into(),
                uid: 501
            })
        );
    }

    #[test]
    fn the_login_window_is_no_one() {
        let state = parse_scutil_console_user(&fixture("scutil-loginwindow.txt")).unwrap();
        assert!(matches!(state, ConsoleState::NoOne(ref why) if why.contains("login window")));
    }

    #[test]
    fn odd_outputs() {
        // Typed: scutil's answer for a key the store does not hold.
        assert!(matches!(
            parse_scutil_console_user("  No such key\n"),
            Ok(ConsoleState::NoOne(_))
        ));
        assert!(matches!(
            parse_scutil_console_user("<dictionary> {\n  Name : root\n  UID : 0\n}\n"),
            Ok(ConsoleState::NoOne(_))
        ));
        assert!(matches!(
            parse_scutil_console_user("<dictionary> {\n  GID : 20\n}\n"),
            Ok(ConsoleState::NoOne(_))
        ));
        assert!(parse_scutil_console_user("<dictionary> {\n  Name : anna\n}\n").is_err());
        assert!(parse_scutil_console_user("").is_err());
    }
}
