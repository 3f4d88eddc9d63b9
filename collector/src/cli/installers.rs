//! `palisade-collector installers`: makes an enrollment secret and prints
//! the silent-install command line for each OS with it, the collector's
//! URL and the pin of the certificate the collector serves.
//!
//! The command lines come from [`crate::installers`], the same function the
//! dashboard's Add devices page uses. Everything is checked before the
//! secret is made, so a mistake leaves no unused secret behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use palisade_shared::pin::CaPin;

use super::{Creating, StoreArgs, cli_actor, expiry_from_now, open_store};
use crate::config::{CollectorConfig, TlsSetting};
use crate::installers::{self, InstallerValues};
use crate::operations;
use crate::state;

/// [`installers::DEFAULT_EXPIRY_DAYS`] as a flag's default (a test holds
/// the two together). `--expires never` says otherwise.
const DEFAULT_INSTALLER_EXPIRY: &str = "7d";

#[derive(Debug, Args)]
pub struct InstallersArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// How many devices may enroll with it (default: unlimited).
    #[arg(long, value_name = "N")]
    uses: Option<u32>,
    /// How long it stays valid, e.g. `7d`, `12h`, or `never`.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_INSTALLER_EXPIRY,
          value_parser = parse_expiry)]
    expires: Expiry,
    /// A note for IT, e.g. the batch of laptops it is for.
    #[arg(long, value_name = "TEXT", default_value = "")]
    label: String,
    /// The URL devices reach the collector at (default: `public_url` from
    /// the config file; one of the two is needed).
    #[arg(long, value_name = "URL")]
    collector_url: Option<String>,
    /// Leave the CA pin out: the collector's certificate is from a public
    /// CA the devices already trust.
    #[arg(long)]
    no_ca_pin: bool,
}

/// `--expires`: a duration, or never.
#[derive(Debug, Clone, Copy)]
pub enum Expiry {
    After(Duration),
    Never,
}

fn parse_expiry(text: &str) -> Result<Expiry, String> {
    if text == "never" {
        return Ok(Expiry::Never);
    }
    humantime::parse_duration(text)
        .map(Expiry::After)
        .map_err(|err| format!("{err} (a duration such as 7d or 12h, or `never`)"))
}

pub(super) async fn run_installers(args: InstallersArgs) -> anyhow::Result<()> {
    let config = CollectorConfig::load(&args.store.overrides())?;
    let url_text = match (&args.collector_url, &config.public_url) {
        (Some(flag), _) => flag.clone(),
        (None, Some(configured)) => configured.clone(),
        (None, None) => bail!(
            "--collector-url: needed, as public_url is not set in the config file; give the URL \
             devices reach the collector at, e.g. https://palisade.example.org:8443"
        ),
    };
    let collector_url = installers::parse_collector_url(&url_text)
        .map_err(|problem| anyhow::anyhow!("--collector-url: {url_text:?} {problem}"))?;
    let ca_pin = if args.no_ca_pin {
        None
    } else {
        let path = pinned_certificate(&config).context(
            "--no-ca-pin not given, so the CA pin is needed: set cert_file and key_file in \
             the config file (or serve --self-signed-tls once), or pass --no-ca-pin when the \
             certificate is from a public CA the devices trust",
        )?;
        Some(pin_of_file(&path)?)
    };
    let expires_at = match args.expires {
        Expiry::After(duration) => expiry_from_now(Some(duration))?,
        Expiry::Never => None,
    };
    let store = open_store(&config, Creating::Never).await?;
    let secret = operations::create_enrollment_secret(
        &store,
        &cli_actor(),
        operations::NewSecret {
            label: args.label,
            max_uses: args.uses,
            expires_at,
        },
    )
    .await?;
    let commands = installers::install_commands(&InstallerValues {
        version: installers::VERSION,
        collector_url: &collector_url,
        secret: &secret.text,
        ca_pin: ca_pin.as_ref(),
    })?;
    // The only place these are shown: they carry the secret.
    for command in commands {
        println!("# {}\n{}\n", command.title, command.text);
    }
    eprintln!(
        "enrollment secret {} created ({}, {}, {}); it is shown once and stored only as a hash",
        secret.info.id,
        args.uses
            .map_or("unlimited uses".to_owned(), |n| format!("{n} uses at most")),
        expires_at.map_or("never expires".to_owned(), |t| format!(
            "expires {}",
            t.to_rfc3339()
        )),
        ca_pin.map_or("no CA pin".to_owned(), |pin| format!("CA pin {pin}")),
    );
    Ok(())
}

/// The certificate chain whose last certificate is pinned: the configured
/// one, else the self-signed one in the state directory if it was made.
fn pinned_certificate(config: &CollectorConfig) -> anyhow::Result<PathBuf> {
    if let Some(path) = served_certificate(config) {
        return Ok(path);
    }
    let self_signed = config.state_dir.join(state::TLS_DIR).join("cert.pem");
    if self_signed.exists() {
        return Ok(self_signed);
    }
    bail!("the collector serves no certificate to pin")
}

/// The chain `serve` sends, when it serves TLS.
pub(super) fn served_certificate(config: &CollectorConfig) -> Option<PathBuf> {
    match &config.tls {
        TlsSetting::Files { cert_file, .. } => Some(cert_file.clone()),
        TlsSetting::SelfSigned => Some(config.state_dir.join(state::TLS_DIR).join("cert.pem")),
        TlsSetting::None => None,
    }
}

/// The pin of the last certificate in the PEM file at `path`.
pub(super) fn pin_of_file(path: &Path) -> anyhow::Result<CaPin> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read certificate {}", path.display()))?;
    installers::pin_of_last_certificate(&pem)
        .map_err(|problem| anyhow::anyhow!("certificate {}: {problem}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_expiry_is_the_dashboards() {
        let Ok(Expiry::After(duration)) = parse_expiry(DEFAULT_INSTALLER_EXPIRY) else {
            panic!("the default does not parse");
        };
        assert_eq!(
            duration,
            Duration::from_secs(u64::from(installers::DEFAULT_EXPIRY_DAYS) * 86_400)
        );
        assert!(matches!(parse_expiry("never"), Ok(Expiry::Never)));
        assert!(parse_expiry("soon").unwrap_err().contains("never"));
    }
}
