//! Reads `pwpolicy -getaccountpolicies` for `password_policy` on macOS:
//! a `Getting global account policies` line, then an XML plist of three
//! categories (pwpolicy(8)): `policyCategoryPasswordContent` (regular
//! expressions every new password must match), `policyCategoryAuthentication`
//! (lockout; pwpolicy(8)'s example spells it
//! `policyCategoryPasswordAuthentication`, so both are read) and
//! `policyCategoryPasswordChange` (expiry). Pure and compiled on every OS, so
//! Linux CI tests it on `agent/tests/fixtures/macos/password_policy/`.

use std::io::Cursor;

use plist::{Dictionary, Value};

use super::{MacAccountPolicies, MacCharClass, MacContentPolicy, MacContentRule};

const MATCHES: &str = "policyAttributePassword matches ";

/// The whole output. No plist at all (only the header line, or nothing)
/// is a machine with no account policies, which `pwpolicy
/// -clearaccountpolicies` leaves; anything else without a plist is an error.
pub fn parse_getaccountpolicies(output: &str) -> Result<MacAccountPolicies, String> {
    let start = output.find("<?xml").or_else(|| output.find("<plist"));
    let Some(start) = start else {
        let rest: Vec<&str> = output
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("Getting global account policies"))
            .collect();
        if rest.is_empty() || rest.iter().all(|line| line.contains("No account policies")) {
            return Ok(MacAccountPolicies::default());
        }
        return Err(format!(
            "pwpolicy printed no property list: {:?}",
            rest.join(" ")
        ));
    };
    let value = Value::from_reader_xml(Cursor::new(&output.as_bytes()[start..]))
        .map_err(|err| format!("pwpolicy's property list does not parse: {err}"))?;
    let dict = value
        .as_dictionary()
        .ok_or_else(|| "pwpolicy's property list is not a dictionary".to_owned())?;
    let mut policies = MacAccountPolicies::default();
    for entry in category(dict, "policyCategoryPasswordContent")? {
        let content = string(entry, "policyContent").unwrap_or_default();
        policies.content.push(MacContentPolicy {
            identifier: string(entry, "policyIdentifier"),
            rule: content_rule(&content),
            content,
        });
    }
    for name in [
        "policyCategoryAuthentication",
        "policyCategoryPasswordAuthentication",
    ] {
        for entry in category(dict, name)? {
            let parameters = parameters(entry);
            if let Some(max) = integer(parameters, "policyAttributeMaximumFailedAuthentications") {
                policies.max_failed_authentications = Some(max);
            }
            if let Some(seconds) = integer(parameters, "autoEnableInSeconds") {
                policies.lockout_seconds = Some(seconds);
            }
        }
    }
    for entry in category(dict, "policyCategoryPasswordChange")? {
        let parameters = parameters(entry);
        let days = integer(parameters, "policyAttributeExpiresEveryNDays")
            .or_else(|| integer(parameters, "policyAttributeDaysUntilExpiration"));
        match days {
            // Several change policies: the shortest period expires first.
            Some(days) => {
                policies.expires_every_days = Some(
                    policies
                        .expires_every_days
                        .map_or(days, |old| old.min(days)),
                );
            }
            None => policies.unread_change_policies.push(
                string(entry, "policyIdentifier")
                    .or_else(|| string(entry, "policyContent"))
                    .unwrap_or_default(),
            ),
        }
    }
    Ok(policies)
}

/// What one `policyContent` requires. Only shapes whose meaning is certain
/// are read; the rest are `Unrecognised`, which the evaluator treats as
/// possibly stricter, never as satisfied.
pub fn content_rule(content: &str) -> MacContentRule {
    let Some(quoted) = content.trim().strip_prefix(MATCHES) else {
        return MacContentRule::Other;
    };
    let Some(regex) = quoted
        .trim()
        .strip_prefix('\'')
        .and_then(|rest| rest.strip_suffix('\''))
    else {
        return MacContentRule::Unrecognised {
            mentions_length: quoted.contains('{'),
        };
    };
    if let Some(length) = min_length(regex) {
        return MacContentRule::MinLength(length);
    }
    if let Some(class) = required_class(regex) {
        return MacContentRule::Requires(class);
    }
    MacContentRule::Unrecognised {
        mentions_length: regex.contains(".{"),
    }
}

/// `^?.{N,M?}[+?]?$?`: at least N characters of anything.
fn min_length(regex: &str) -> Option<u32> {
    let rest = regex.strip_prefix('^').unwrap_or(regex);
    let rest = rest.strip_suffix('$').unwrap_or(rest);
    let rest = rest
        .strip_suffix('+')
        .or_else(|| rest.strip_suffix('?'))
        .unwrap_or(rest);
    let inner = rest.strip_prefix(".{")?.strip_suffix('}')?;
    let (low, high) = inner.split_once(',')?;
    if !high.is_empty() && high.parse::<u32>().is_err() {
        return None;
    }
    low.parse().ok()
}

/// `(.*CLASS.*){1,}+` and its plainer forms `.*CLASS.*`: one character of
/// CLASS somewhere, for the classes macOS' own and CIS's policies use.
fn required_class(regex: &str) -> Option<MacCharClass> {
    let inner = regex
        .strip_prefix("(.*")
        .and_then(|rest| {
            [".*){1,}+", ".*){1,}", ".*)+", ".*)"]
                .iter()
                .find_map(|end| rest.strip_suffix(end))
        })
        .or_else(|| {
            regex
                .strip_prefix(".*")
                .and_then(|rest| rest.strip_suffix(".*"))
        })?;
    match inner {
        "[A-Za-z]" | "[a-zA-Z]" => Some(MacCharClass::Letter),
        "[A-Z]" => Some(MacCharClass::Upper),
        "[a-z]" => Some(MacCharClass::Lower),
        "[0-9]" | "[[:digit:]]" => Some(MacCharClass::Digit),
        "[^a-zA-Z0-9]" | "[^A-Za-z0-9]" | "[^0-9a-zA-Z]" | "[^0-9A-Za-z]" => {
            Some(MacCharClass::Symbol)
        }
        _ => None,
    }
}

fn category<'a>(dict: &'a Dictionary, name: &str) -> Result<Vec<&'a Dictionary>, String> {
    match dict.get(name) {
        None => Ok(Vec::new()),
        Some(Value::Array(entries)) => entries
            .iter()
            .map(|entry| {
                entry
                    .as_dictionary()
                    .ok_or_else(|| format!("an entry of {name} is not a dictionary"))
            })
            .collect(),
        Some(_) => Err(format!("{name} is not an array")),
    }
}

fn parameters(entry: &Dictionary) -> Option<&Dictionary> {
    entry.get("policyParameters").and_then(Value::as_dictionary)
}

fn string(entry: &Dictionary, key: &str) -> Option<String> {
    entry.get(key).and_then(Value::as_string).map(str::to_owned)
}

fn integer(parameters: Option<&Dictionary>, key: &str) -> Option<i64> {
    parameters?.get(key)?.as_signed_integer()
}
