//! The silent-install command lines for each OS, with the collector's URL,
//! an enrollment secret and the CA pin filled in: written once, here, for
//! `palisade-collector installers` and the dashboard's "Add devices" page.
//!
//! Everything here is pure: values in, text out. The names the packages
//! read (`COLLECTOR_URL`, `PALISADE_ENROLL_SECRET`, `install.conf`, …) and
//! the package file names are a contract with packaging/; keep them.
//!
//! Every value is quoted for the shell that runs it, even those whose
//! alphabet is known (a secret is `[A-Za-z0-9_-]`, a pin base64): POSIX sh
//! gets single quotes; cmd.exe gets double quotes, and a value cmd would
//! still expand inside them (`%`, `!`) or that would end them (`"`) is
//! refused rather than half-escaped. Control characters are refused
//! everywhere, so a command stays one line that can be copied.
//!
//! What it must not do: read files, the clock or the store; log anything
//! (its output holds a secret).

use palisade_shared::pin::CaPin;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// The agent's version, which is the collector's: both are built from one
/// workspace version, and the packages are named with it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a secret made for install commands stays valid unless the
/// operator says otherwise: a week. The commands get pasted into
/// deployment tools and tickets that others read, so the secret should
/// stop working soon; a week covers a rollout wave.
pub const DEFAULT_EXPIRY_DAYS: u32 = 7;

/// Where the macOS package reads its settings (packaging/macos).
pub const MACOS_INSTALL_CONF: &str = "/Library/Application Support/Palisade/install.conf";

/// What goes into the command lines.
#[derive(Debug, Clone, Copy)]
pub struct InstallerValues<'a> {
    /// The package version ([`VERSION`] outside tests).
    pub version: &'a str,
    /// Checked by [`parse_collector_url`].
    pub collector_url: &'a str,
    /// `pls_<id>_<random>`.
    pub secret: &'a str,
    /// `None`: the collector's certificate is from a CA the devices trust
    /// anyway (`--no-ca-pin`).
    pub ca_pin: Option<&'a CaPin>,
}

/// One OS's command lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallCommand {
    /// A stable id (`windows`, `debian`, `rhel`, `macos`), for element ids.
    pub os: &'static str,
    /// What a person reads above it.
    pub title: &'static str,
    /// The lines to run, joined by `\n`.
    pub text: String,
}

/// Why the command lines could not be written; names the value at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallerError {
    #[error("{field}: {problem}")]
    Unquotable {
        field: &'static str,
        problem: &'static str,
    },
}

/// The command lines for Windows, Debian/Ubuntu, RHEL/Fedora and macOS, in
/// that order.
pub fn install_commands(
    values: &InstallerValues<'_>,
) -> Result<Vec<InstallCommand>, InstallerError> {
    let version = values.version;
    let pin = values.ca_pin.map(ToString::to_string);
    let fields: Vec<(&'static str, &'static str, &str)> = [
        Some(("collector URL", "COLLECTOR_URL", values.collector_url)),
        Some(("enrollment secret", "ENROLL_SECRET", values.secret)),
        pin.as_deref().map(|pin| ("CA pin", "CA_PIN", pin)),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (field, _, value) in &fields {
        refuse_control_characters(field, value)?;
    }

    let mut msiexec = format!("msiexec /i palisade-agent-{version}-x64.msi /qn");
    for (field, name, value) in &fields {
        msiexec.push_str(&format!(" {name}={}", cmd_quote(field, value)?));
    }
    let env: String = fields
        .iter()
        .map(|(_, name, value)| format!(" PALISADE_{name}={}", sh_quote(value)))
        .collect();
    let conf_lines: String = fields
        .iter()
        .map(|(_, name, value)| format!(" {}", sh_quote(&format!("{name}={value}"))))
        .collect();
    let conf = sh_quote(MACOS_INSTALL_CONF);
    let conf_dir = sh_quote(
        MACOS_INSTALL_CONF
            .rsplit_once('/')
            .map_or(MACOS_INSTALL_CONF, |(dir, _)| dir),
    );
    Ok(vec![
        InstallCommand {
            os: "windows",
            title: "Windows (an elevated command prompt)",
            text: msiexec,
        },
        InstallCommand {
            os: "debian",
            title: "Debian and Ubuntu",
            text: format!("sudo env{env} apt-get install -y ./palisade-agent_{version}_amd64.deb"),
        },
        InstallCommand {
            os: "rhel",
            title: "RHEL and Fedora",
            text: format!("sudo env{env} dnf install -y ./palisade-agent-{version}-1.x86_64.rpm"),
        },
        InstallCommand {
            os: "macos",
            title: "macOS",
            // The file is made empty with mode 0600 before the secret is
            // written into it (`tee` keeps the mode), so it is never
            // readable by others, whatever the umask; umask 077 covers the
            // rest of the session.
            text: format!(
                "umask 077\n\
                 sudo install -d -m 0755 {conf_dir}\n\
                 sudo install -m 0600 /dev/null {conf}\n\
                 printf '%s\\n'{conf_lines} | sudo tee {conf} >/dev/null\n\
                 sudo installer -pkg palisade-agent-{version}.pkg -target /"
            ),
        },
    ])
}

/// A collector URL agents can be given, as text: `https://`, or `http://`
/// to a loopback address (the agent's own rule), no user name, password,
/// query or fragment. A bare `https://host:port/` loses its trailing slash.
pub fn parse_collector_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text.trim()).map_err(|err| format!("not a URL: {err}"))?;
    let Some(host) = url.host() else {
        return Err("has no host".to_owned());
    };
    let loopback = match host {
        url::Host::Domain(name) => name == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "is plain http to a host that is not loopback; agents send secrets and reports \
                 over https only"
                    .to_owned(),
            );
        }
        other => return Err(format!("has scheme {other:?}; use https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("carries a user name or password".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("has a ?query or #fragment; give the collector's base URL".to_owned());
    }
    let serialised = url.as_str();
    // A collector's base URL needs no more than these; anything else (`%`
    // of percent-encoding, `!`, `$`, quotes) is special to cmd.exe or
    // PowerShell somewhere. Refused here, not only when quoting, so that a
    // bad URL is caught before a secret is made for it.
    if let Some(c) = serialised
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~:/[]".contains(*c)))
    {
        return Err(format!(
            "contains {c:?}; a collector URL here may hold only letters, digits and - . _ ~ : / [ ] \
             (cmd.exe and PowerShell treat other characters specially)"
        ));
    }
    Ok(if url.path() == "/" {
        serialised.trim_end_matches('/').to_owned()
    } else {
        serialised.to_owned()
    })
}

/// The pin of the last certificate in a PEM chain: the topmost one the
/// collector sends, so the pin survives the leaf's renewal when the chain
/// carries its issuer too.
pub fn pin_of_last_certificate(pem: &[u8]) -> Result<CaPin, String> {
    let mut last = None;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        last = Some(certificate.map_err(|err| format!("not a PEM certificate chain: {err}"))?);
    }
    let last = last.ok_or_else(|| "holds no PEM certificate".to_owned())?;
    CaPin::of_certificate(last.as_ref()).map_err(|err| err.to_string())
}

/// `'value'`, with each `'` as `'\''`: nothing is special inside single
/// quotes in POSIX sh.
fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `"value"` for cmd.exe and msiexec, refusing what double quotes do not
/// protect there.
fn cmd_quote(field: &'static str, value: &str) -> Result<String, InstallerError> {
    let problem = if value.contains('"') {
        Some("contains a double quote, which cannot be quoted for cmd.exe")
    } else if value.contains('%') || value.contains('!') {
        Some(
            "contains % or !, which cmd.exe expands even inside quotes (use a URL without percent-encoding)",
        )
    } else {
        None
    };
    match problem {
        Some(problem) => Err(InstallerError::Unquotable { field, problem }),
        None => Ok(format!("\"{value}\"")),
    }
}

fn refuse_control_characters(field: &'static str, value: &str) -> Result<(), InstallerError> {
    if value.chars().any(char::is_control) {
        return Err(InstallerError::Unquotable {
            field,
            problem: "contains a control character such as a line break",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "pls_0123456789abcdef_AbC-dEf_123";

    fn pin() -> CaPin {
        "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
            .parse()
            .unwrap()
    }

    fn commands(url: &str, pin: Option<&CaPin>) -> Result<Vec<InstallCommand>, InstallerError> {
        install_commands(&InstallerValues {
            version: "1.2.3",
            collector_url: url,
            secret: SECRET,
            ca_pin: pin,
        })
    }

    #[test]
    fn every_os_gets_its_exact_command_line() {
        let pin = pin();
        let all = commands("https://palisade.example.org:8443", Some(&pin)).unwrap();
        let by_os: Vec<(&str, String)> = all.iter().map(|c| (c.os, c.text.clone())).collect();
        let p = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let u = "https://palisade.example.org:8443";
        assert_eq!(
            by_os,
            vec![
                (
                    "windows",
                    format!(
                        "msiexec /i palisade-agent-1.2.3-x64.msi /qn COLLECTOR_URL=\"{u}\" \
                         ENROLL_SECRET=\"{SECRET}\" CA_PIN=\"{p}\""
                    )
                ),
                (
                    "debian",
                    format!(
                        "sudo env PALISADE_COLLECTOR_URL='{u}' PALISADE_ENROLL_SECRET='{SECRET}' \
                         PALISADE_CA_PIN='{p}' apt-get install -y ./palisade-agent_1.2.3_amd64.deb"
                    )
                ),
                (
                    "rhel",
                    format!(
                        "sudo env PALISADE_COLLECTOR_URL='{u}' PALISADE_ENROLL_SECRET='{SECRET}' \
                         PALISADE_CA_PIN='{p}' dnf install -y ./palisade-agent-1.2.3-1.x86_64.rpm"
                    )
                ),
                (
                    "macos",
                    format!(
                        "umask 077\n\
                         sudo install -d -m 0755 '/Library/Application Support/Palisade'\n\
                         sudo install -m 0600 /dev/null '{MACOS_INSTALL_CONF}'\n\
                         printf '%s\\n' 'COLLECTOR_URL={u}' 'ENROLL_SECRET={SECRET}' 'CA_PIN={p}' \
                         | sudo tee '{MACOS_INSTALL_CONF}' >/dev/null\n\
                         sudo installer -pkg palisade-agent-1.2.3.pkg -target /"
                    )
                ),
            ]
        );
    }

    #[test]
    fn without_a_pin_no_command_names_one() {
        for command in commands("https://palisade.example.org", None).unwrap() {
            assert!(!command.text.contains("CA_PIN"), "{}", command.text);
            assert!(command.text.contains(SECRET), "{}", command.text);
        }
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // sh itself is the judge of the quoting
    fn sh_gives_back_exactly_what_was_quoted() {
        for value in [
            "plain",
            "it's",
            "'",
            "a b",
            "$(touch /tmp/x)`id`;&|<>\\\"*?~#",
        ] {
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", sh_quote(value)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&output.stdout), value);
        }
    }

    #[test]
    fn what_cmd_cannot_quote_is_refused_naming_the_value() {
        for url in [
            "https://palisade.example.org/a%20b",
            "https://palisade.example.org/x!y",
        ] {
            let err = commands(url, None).unwrap_err();
            assert!(err.to_string().starts_with("collector URL: "), "{err}");
        }
        let err = install_commands(&InstallerValues {
            version: "1",
            collector_url: "https://palisade.example.org",
            secret: "pls_x\"&calc",
            ca_pin: None,
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("enrollment secret: "), "{err}");
        let err = commands("https://a.example/\nrm -rf /", None).unwrap_err();
        assert!(err.to_string().contains("control character"), "{err}");
    }

    #[test]
    fn collector_urls_follow_the_agents_rules() {
        for (text, expected) in [
            (
                "https://palisade.example.org",
                "https://palisade.example.org",
            ),
            (
                "https://Palisade.Example.org:8443/",
                "https://palisade.example.org:8443",
            ),
            (
                "https://palisade.example.org/base/",
                "https://palisade.example.org/base/",
            ),
            ("http://127.0.0.1:8443", "http://127.0.0.1:8443"),
            ("http://localhost:8443", "http://localhost:8443"),
            ("https://[::1]:8443", "https://[::1]:8443"),
        ] {
            assert_eq!(parse_collector_url(text).as_deref(), Ok(expected), "{text}");
        }
        for (text, problem) in [
            ("palisade.example.org", "not a URL"),
            ("http://palisade.example.org", "plain http"),
            ("ftp://palisade.example.org", "scheme"),
            ("https://user:pw@palisade.example.org", "user name"),
            ("https://palisade.example.org/?a=1", "?query"),
            ("https://palisade.example.org/#x", "#fragment"),
            ("https://palisade.example.org/a b", "'%'"),
            ("https://palisade.example.org/a!b", "'!'"),
            ("https://palisade.example.org/$x", "'$'"),
        ] {
            let err = parse_collector_url(text).unwrap_err();
            assert!(err.contains(problem), "{text}: {err}");
        }
    }

    #[test]
    fn the_pin_is_of_the_last_certificate_in_the_chain() {
        let leaf = rcgen::generate_simple_self_signed(vec!["leaf.example".to_owned()]).unwrap();
        let top = rcgen::generate_simple_self_signed(vec!["top.example".to_owned()]).unwrap();
        let chain = format!("{}{}", leaf.cert.pem(), top.cert.pem());
        let pin = pin_of_last_certificate(chain.as_bytes()).unwrap();
        assert_eq!(pin, CaPin::of_certificate(top.cert.der()).unwrap());
        assert_ne!(pin, CaPin::of_certificate(leaf.cert.der()).unwrap());
        assert!(
            pin_of_last_certificate(b"")
                .unwrap_err()
                .contains("no PEM certificate")
        );
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(pin_of_last_certificate(broken.as_bytes()).is_err());
    }
}
