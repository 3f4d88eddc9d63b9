//! Reading a security descriptor in SDDL (the text Windows gives for an
//! ACL, e.g. `O:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;0x1200a9;;;BU)`) to answer
//! one question: may anyone but the trusted accounts write to this
//! directory or what will be created in it?
//!
//! Pure text in, answer out: compiled on every OS and table-tested on
//! Linux; `acl.rs` gets the text from Windows. Anything it cannot read (an
//! ACE type, a right it does not know) is an error, so the caller refuses
//! the directory instead of trusting what it could not read.
//!
//! Format reference: Microsoft's "Security Descriptor String Format" and
//! "ACE Strings" pages (learn.microsoft.com, Win32 security docs).

/// The protected ACL the agent gives the directories it creates for its
/// state: SYSTEM and Administrators full control, Users read and execute
/// (list, read, traverse; `0x1200a9` is FILE_GENERIC_READ |
/// FILE_GENERIC_EXECUTE), inherited by everything created inside. `P`
/// blocks inheritance from `%ProgramData%`, whose ACL lets Users create
/// folders and files (the osquery CVE-2019-3567 and Kolide CVE-2024-54131
/// lesson: a directory other users can write lets them plant what a
/// SYSTEM service later reads).
pub const STATE_DIR_SDDL: &str = "D:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)";

/// Accounts that may always write: SYSTEM, Administrators, CREATOR OWNER
/// (an inherit-only placeholder for whoever creates a child, who already
/// had to be allowed to write) and TrustedInstaller, each as an SDDL alias
/// and as a SID string.
pub const TRUSTED_WRITERS: &[&str] = &[
    "SY",
    "S-1-5-18",
    "BA",
    "S-1-5-32-544",
    "CO",
    "S-1-3-0",
    "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464",
];

/// Rights that let a holder change a directory, what is in it, or its
/// ACL: FILE_ADD_FILE (0x2), FILE_ADD_SUBDIRECTORY (0x4), FILE_WRITE_EA
/// (0x10), FILE_DELETE_CHILD (0x40), FILE_WRITE_ATTRIBUTES (0x100),
/// DELETE, WRITE_DAC, WRITE_OWNER, GENERIC_ALL and GENERIC_WRITE (winnt.h).
pub const WRITE_RIGHTS: u32 =
    0x2 | 0x4 | 0x10 | 0x40 | 0x100 | 0x1_0000 | 0x4_0000 | 0x8_0000 | 0x1000_0000 | 0x4000_0000;

/// One ACE of a DACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ace {
    pub allow: bool,
    /// The ACE flags as written (`OICI`, `ID`, …).
    pub flags: String,
    pub rights: u32,
    /// An SDDL alias (`BU`) or a SID string (`S-1-5-21-…`).
    pub trustee: String,
}

/// The parts of a descriptor this module reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub owner: Option<String>,
    pub dacl: Dacl,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dacl {
    /// No `D:` part: the DACL was not asked for or not given.
    Absent,
    /// `D:NO_ACCESS_CONTROL`: a NULL DACL, which lets everyone do everything.
    Null,
    Aces {
        /// `P`: not inheriting from the parent.
        protected: bool,
        aces: Vec<Ace>,
    },
}

/// Parses the owner and DACL of an SDDL string.
pub fn parse(sddl: &str) -> Result<Descriptor, String> {
    let mut owner = None;
    let mut dacl = Dacl::Absent;
    for (tag, body) in components(sddl)? {
        match tag {
            'O' => owner = Some(body.to_owned()),
            'D' => dacl = parse_dacl(body)?,
            // The group and the SACL say nothing about who may write.
            _ => {}
        }
    }
    Ok(Descriptor { owner, dacl })
}

/// Who, besides `trusted` (and [`TRUSTED_WRITERS`]), may write: each as
/// `TRUSTEE (reason)`. Empty means nobody else. Deny ACEs are not
/// subtracted: reading them wrong could only hide a writer, and the
/// directories the agent makes have none.
pub fn untrusted_writers(descriptor: &Descriptor, trusted: &[&str]) -> Vec<String> {
    let is_trusted = |who: &str| {
        TRUSTED_WRITERS
            .iter()
            .chain(trusted)
            .any(|t| t.eq_ignore_ascii_case(who))
    };
    let mut found = Vec::new();
    match &descriptor.owner {
        // The owner may always rewrite the ACL.
        Some(owner) if !is_trusted(owner) || owner.eq_ignore_ascii_case("CO") => {
            found.push(format!("{owner} (the owner, who may change the ACL)"));
        }
        Some(_) => {}
        None => found.push("(no owner given)".to_owned()),
    }
    match &descriptor.dacl {
        Dacl::Absent => found.push("(no DACL given)".to_owned()),
        Dacl::Null => found.push("Everyone (a NULL DACL allows all access)".to_owned()),
        Dacl::Aces { aces, .. } => {
            for ace in aces {
                if ace.allow && ace.rights & WRITE_RIGHTS != 0 && !is_trusted(&ace.trustee) {
                    found.push(format!(
                        "{} (rights 0x{:x}{})",
                        ace.trustee,
                        ace.rights,
                        if ace.flags.contains("IO") {
                            ", on what is created inside"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
    }
    found
}

/// Splits `O:…G:…D:…S:…` into its tagged parts. A tag is one of `OGDS`
/// followed by `:` outside parentheses (SID strings such as `S-1-5-18` are
/// followed by `-`, never `:`).
fn components(sddl: &str) -> Result<Vec<(char, &str)>, String> {
    let bytes = sddl.as_bytes();
    let mut starts = Vec::new();
    let mut depth = 0_i32;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'O' | b'G' | b'D' | b'S' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                starts.push(i);
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced parentheses in {sddl:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {sddl:?}"));
    }
    if starts.first() != Some(&0) && !sddl.trim().is_empty() {
        return Err(format!("{sddl:?} does not start with O:, G:, D: or S:"));
    }
    let mut parts = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(sddl.len());
        let tag = char::from(bytes[start]);
        parts.push((tag, &sddl[start + 2..end]));
    }
    Ok(parts)
}

/// `PAI(A;…)(D;…)`, or `NO_ACCESS_CONTROL`.
fn parse_dacl(body: &str) -> Result<Dacl, String> {
    let (flags, mut rest) = body.split_at(body.find('(').unwrap_or(body.len()));
    if flags.contains("NO_ACCESS_CONTROL") {
        return Ok(Dacl::Null);
    }
    let protected = flags.contains('P');
    let mut aces = Vec::new();
    while let Some(open) = rest.strip_prefix('(') {
        let close = open
            .find(')')
            .ok_or_else(|| format!("unclosed ACE in {body:?}"))?;
        aces.push(parse_ace(&open[..close])?);
        rest = &open[close + 1..];
    }
    if !rest.is_empty() {
        return Err(format!("unexpected {rest:?} after the ACEs in {body:?}"));
    }
    Ok(Dacl::Aces { protected, aces })
}

/// `type;flags;rights;object_guid;inherit_object_guid;trustee[;attrs]`.
fn parse_ace(text: &str) -> Result<Ace, String> {
    let fields: Vec<&str> = text.split(';').collect();
    if fields.len() < 6 {
        return Err(format!("ACE {text:?} has {} fields, not 6", fields.len()));
    }
    let allow = match fields[0] {
        // Allowed, object allowed, callback allowed, callback object allowed.
        "A" | "OA" | "XA" | "ZA" => true,
        "D" | "OD" | "XD" => false,
        other => {
            return Err(format!(
                "ACE type {other:?} in {text:?} is not one this agent reads"
            ));
        }
    };
    Ok(Ace {
        allow,
        flags: fields[1].to_owned(),
        rights: parse_rights(fields[2]).map_err(|err| format!("ACE {text:?}: {err}"))?,
        trustee: fields[5].to_owned(),
    })
}

/// A hex mask (`0x1200a9`) or two-letter codes (`FA`, `GRGX`, `CCDCLC`).
fn parse_rights(text: &str) -> Result<u32, String> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).map_err(|err| format!("rights {text:?}: {err}"));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|err| format!("rights {text:?}: {err}"));
    }
    if text.len() % 2 != 0 {
        return Err(format!("rights {text:?} are not two-letter codes"));
    }
    let mut mask = 0;
    for code in text.as_bytes().chunks(2) {
        let code = std::str::from_utf8(code).unwrap_or("");
        mask |= right_code(code).ok_or_else(|| format!("unknown right {code:?} in {text:?}"))?;
    }
    Ok(mask)
}

/// The SDDL right codes (sddl.h) and their masks.
fn right_code(code: &str) -> Option<u32> {
    Some(match code {
        "GA" => 0x1000_0000,
        "GR" => 0x8000_0000,
        "GW" => 0x4000_0000,
        "GX" => 0x2000_0000,
        "RC" => 0x2_0000,
        "SD" => 0x1_0000,
        "WD" => 0x4_0000,
        "WO" => 0x8_0000,
        "RP" => 0x10,
        "WP" => 0x20,
        "CC" => 0x1,
        "DC" => 0x2,
        "LC" => 0x4,
        "SW" => 0x8,
        "LO" => 0x80,
        "DT" => 0x40,
        "CR" => 0x100,
        "FA" => 0x1f_01ff,
        "FR" => 0x12_0089,
        "FW" => 0x12_0116,
        "FX" => 0x12_00a0,
        "KA" => 0xf_003f,
        "KR" | "KX" => 0x2_0019,
        "KW" => 0x2_0006,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row: an SDDL string, the extra trusted account, and who else
    /// may write (`Err` for text that must be refused unread).
    fn writers(sddl: &str, trusted: &[&str]) -> Result<Vec<String>, String> {
        parse(sddl).map(|d| untrusted_writers(&d, trusted))
    }

    #[test]
    fn who_may_write_a_directory() {
        let user = "S-1-5-21-1-2-3-1001";
        let cases: &[(&str, &[&str], Result<usize, ()>)] = &[
            // What the agent sets, as Windows reads it back with an owner.
            (&format!("O:SY{STATE_DIR_SDDL}"), &[], Ok(0)),
            (
                "O:BAD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)",
                &[],
                Ok(0),
            ),
            // Users with "modify": the pre-created directory of the CVEs.
            (
                "O:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;0x1301bf;;;BU)",
                &[],
                Ok(1),
            ),
            // %ProgramData%'s own grant: Users may create folders and append.
            ("O:SYD:(A;CI;DCLCRPCR;;;BU)(A;OICI;FA;;;SY)", &[], Ok(1)),
            // Inherited write for Authenticated Users on what is created inside.
            (
                "O:BAD:AI(A;OICIIOID;SDGXGWGR;;;AU)(A;OICI;FA;;;BA)",
                &[],
                Ok(1),
            ),
            // Everyone read only: fine.
            ("O:BAD:P(A;;FR;;;WD)(A;;FA;;;BA)", &[], Ok(0)),
            // An owner that is a plain user may rewrite the ACL.
            (&format!("O:{user}D:P(A;;FA;;;SY)"), &[], Ok(1)),
            // ... unless it is the account the agent runs as.
            (
                &format!("O:{user}D:P(A;;FA;;;SY)(A;;FA;;;{user})"),
                &[user],
                Ok(0),
            ),
            // CREATOR OWNER as an inherit-only placeholder is harmless.
            ("O:SYD:P(A;OICIIO;GA;;;CO)(A;OICI;FA;;;SY)", &[], Ok(0)),
            // A NULL DACL lets everyone in.
            ("O:SYD:NO_ACCESS_CONTROL", &[], Ok(1)),
            // No DACL read: not trusted.
            ("O:SY", &[], Ok(1)),
            // Deny ACEs are not subtracted.
            ("O:SYD:P(D;;FW;;;BU)(A;;FA;;;BU)", &[], Ok(1)),
            // A write right spelled as a single code.
            ("O:SYD:P(A;;WD;;;BU)", &[], Ok(1)),
            // Group and SACL parts are skipped.
            ("O:SYG:SYD:P(A;;FA;;;SY)S:(ML;;NW;;;HI)", &[], Ok(0)),
            // What cannot be read is refused.
            ("O:SYD:P(A;;ZZ;;;BU)", &[], Err(())),
            ("O:SYD:P(AU;SA;FA;;;WD)", &[], Err(())),
            ("O:SYD:P(A;;FA;;;SY", &[], Err(())),
            ("garbage", &[], Err(())),
        ];
        for (sddl, trusted, expected) in cases {
            let got = writers(sddl, trusted);
            match expected {
                Ok(count) => {
                    let got = got.unwrap_or_else(|err| panic!("{sddl}: {err}"));
                    assert_eq!(got.len(), *count, "{sddl}: {got:?}");
                }
                Err(()) => assert!(got.is_err(), "{sddl}: {got:?}"),
            }
        }
    }

    #[test]
    fn the_state_acl_grants_users_no_write_right() {
        let parsed = parse(STATE_DIR_SDDL).unwrap_or_else(|err| panic!("{err}"));
        let Dacl::Aces { protected, aces } = parsed.dacl else {
            panic!("no ACEs");
        };
        assert!(protected);
        let users = aces.iter().find(|a| a.trustee == "BU").map(|a| a.rights);
        assert_eq!(users, Some(0x1200a9));
        assert_eq!(0x1200a9 & WRITE_RIGHTS, 0);
    }
}
