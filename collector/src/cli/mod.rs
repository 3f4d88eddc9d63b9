//! The command line of `palisade-collector`: every subcommand that touches
//! the store takes the same `--config`, `--state-dir` and `--database-url`
//! flags, so an operator never has to think about which one reads what.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::config::{CollectorConfig, Overrides};
use crate::operations;
use crate::server::{self};
use crate::state;
use crate::store::{IfMissing, Role, Store, StoreError};

mod access;
mod installers;
mod serve;

use access::{run_token, run_user};
use installers::{InstallersArgs, run_installers};
use serve::serve;

/// The baseline policy served until an operator sets another.
pub const BASELINE_POLICY: &str = include_str!("../../../config/policy.toml");

#[derive(Debug, Parser)]
#[command(
    name = "palisade-collector",
    version,
    about = "Palisade collector: enrolls devices, verifies and stores signed posture reports"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on (overrides `listen` in the file).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Serve HTTPS with a self-signed certificate made in the state
        /// directory: for demos and tests only.
        #[arg(long)]
        self_signed_tls: bool,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enrollment secrets.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Create an enrollment secret and print the silent-install command
    /// line for each OS, with the secret, the collector URL and the CA pin.
    Installers(InstallersArgs),
    /// Devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// The policy served to agents.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// API tokens for the admin API.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Dashboard users (IT staff who log in to the web pages).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a dashboard user. The password is read from standard input
    /// when it is not a terminal (its first line), else asked for twice
    /// without echo; at least 12 characters.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, value_name = "NAME")]
        username: String,
        /// `viewer` sees everything; `admin` also revokes devices, sets
        /// policy, creates secrets and grants exceptions.
        #[arg(long, value_enum)]
        role: TokenRole,
    },
    /// List dashboard users (never their password hashes).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a dashboard user; their sessions end at once.
    Delete {
        #[command(flatten)]
        store: StoreArgs,
        username: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it once.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// `viewer` reads; `admin` also revokes devices, sets policy, creates
        /// secrets and grants exceptions.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// A note for IT, e.g. who or what uses it; shown in the audit log.
        #[arg(long, value_name = "TEXT", default_value = "")]
        label: String,
    },
    /// List API tokens (never the tokens themselves).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke an API token: it is refused from the next request on.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The token id (the 16 hex digits after `plt_`).
        id: String,
    },
}

/// A token's role on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TokenRole {
    Admin,
    Viewer,
}

impl From<TokenRole> for Role {
    fn from(role: TokenRole) -> Self {
        match role {
            TokenRole::Admin => Self::Admin,
            TokenRole::Viewer => Self::Viewer,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create an enrollment secret and print it once.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// How many devices may enroll with it (default: unlimited).
        #[arg(long, value_name = "N")]
        uses: Option<u32>,
        /// How long it stays valid, e.g. `7d`, `12h` (default: never expires).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// A note for IT, e.g. the batch of laptops it is for.
        #[arg(long, value_name = "TEXT", default_value = "")]
        label: String,
    },
    /// List enrollment secrets (never the secrets themselves), with their
    /// state: active, expired, used_up or revoked.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke an enrollment secret: devices presenting it are refused from
    /// now on (the ones it enrolled stay enrolled). Revoking again changes
    /// nothing.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The secret id (the 16 hex digits after `pls_`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Revoke a device: its reports are refused from now on.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The device id (`dev_…`).
        device_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate, sign and make FILE the current policy.
    Set {
        #[command(flatten)]
        store: StoreArgs,
        file: PathBuf,
    },
}

/// Where the store is; shared by every subcommand.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Config file (default: /etc/palisade/collector.toml if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory: database, policy key, self-signed certificate.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB` (default: SQLite in the state directory).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

impl StoreArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            state_dir: self.state_dir.clone(),
            database_url: self.database_url.clone(),
            ..Overrides::default()
        }
    }
}

/// Who is acting when a command-line user changes something.
fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// `--expires` as the instant it names.
fn expiry_from_now(expires: Option<Duration>) -> anyhow::Result<Option<DateTime<Utc>>> {
    expires
        .map(|duration| {
            chrono::Duration::from_std(duration)
                .ok()
                .and_then(|duration| Utc::now().checked_add_signed(duration))
                .context("--expires: too long")
        })
        .transpose()
}

/// Whether a command may create a SQLite database that is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creating {
    /// `migrate`: creating it is what was asked for.
    Asked,
    /// `serve`: only on this collector's first start (its state directory
    /// has no policy-signing key yet), so that a mistyped path on a
    /// collector that has data is an error, not a new empty database.
    OnFirstServe,
    /// Every other command works on a database that exists.
    Never,
}

async fn open_store(config: &CollectorConfig, creating: Creating) -> anyhow::Result<Store> {
    let has_run_before = state::has_policy_key(&config.state_dir);
    state::ensure_state_dir(&config.state_dir)?;
    let if_missing = match creating {
        Creating::Asked => IfMissing::Create,
        Creating::OnFirstServe if !has_run_before => IfMissing::Create,
        Creating::OnFirstServe | Creating::Never => IfMissing::Refuse,
    };
    match Store::open_or(&config.database_url, if_missing).await {
        Ok(store) => Ok(store),
        Err(StoreError::Missing { path }) if creating == Creating::Never => bail!(
            "the SQLite database {} does not exist: check database_url (set by {}) for a typo. \
             `palisade-collector serve` creates it on its first start, and \
             `palisade-collector migrate` with the same settings whenever asked",
            path.display(),
            config.database_url_from,
        ),
        Err(StoreError::Missing { path }) => bail!(
            "the SQLite database {} does not exist. This collector has run from {} before (its \
             policy-signing key is there), so it does not make a new, empty one: check \
             database_url (set by {}) for a typo, or run `palisade-collector migrate` with the \
             same settings to create an empty database there",
            path.display(),
            config.state_dir.display(),
            config.database_url_from,
        ),
        Err(err) => Err(anyhow::Error::new(err).context(format!(
            "cannot open the database {}",
            redact_url(&config.database_url)
        ))),
    }
}

/// A database URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            store,
            listen,
            self_signed_tls,
        } => {
            let mut overrides = store.overrides();
            overrides.listen = listen;
            overrides.self_signed_tls = self_signed_tls;
            serve(CollectorConfig::load(&overrides)?).await
        }
        Command::Migrate { store } => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config, Creating::Asked).await?;
            println!(
                "database {} is up to date ({})",
                redact_url(&config.database_url),
                store.kind()
            );
            Ok(())
        }
        Command::Secret(SecretCommand::Create {
            store,
            uses,
            expires,
            label,
        }) => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config, Creating::Never).await?;
            let expires_at = expiry_from_now(expires)?;
            let secret = operations::create_enrollment_secret(
                &store,
                &cli_actor(),
                operations::NewSecret {
                    label,
                    max_uses: uses,
                    expires_at,
                },
            )
            .await?;
            // The only place the secret is ever shown.
            println!("{}", secret.text);
            eprintln!(
                "enrollment secret {} created ({}, {}); it is shown once and stored only as a hash",
                secret.info.id,
                uses.map_or("unlimited uses".to_owned(), |n| format!(
                    "{n} use{}",
                    if n == 1 { "" } else { "s" }
                )),
                expires_at.map_or("never expires".to_owned(), |t| format!(
                    "expires {}",
                    t.to_rfc3339()
                )),
            );
            Ok(())
        }
        Command::Secret(SecretCommand::List { store }) => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config, Creating::Never).await?;
            let now = Utc::now();
            for secret in store.list_enrollment_secrets().await? {
                println!(
                    "{}\t{}\tuses {}/{}\texpires {}\t{}",
                    secret.id,
                    secret.state(now).as_str(),
                    secret.uses,
                    secret
                        .max_uses
                        .map_or("unlimited".to_owned(), |n| n.to_string()),
                    secret
                        .expires_at
                        .map_or("never".to_owned(), |t| t.to_rfc3339()),
                    secret.label
                );
            }
            Ok(())
        }
        Command::Secret(SecretCommand::Revoke { store, id }) => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config, Creating::Never).await?;
            let revoked = operations::revoke_enrollment_secret(&store, &cli_actor(), &id).await?;
            let when = revoked.revoked_at.to_rfc3339();
            if revoked.newly_revoked {
                println!("enrollment secret {id} revoked");
            } else {
                println!("enrollment secret {id} was already revoked at {when}");
            }
            Ok(())
        }
        Command::Installers(args) => run_installers(args).await,
        Command::Device(DeviceCommand::Revoke { store, device_id }) => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config, Creating::Never).await?;
            let revoked = operations::revoke_device(&store, &cli_actor(), &device_id).await?;
            if !revoked.newly_revoked {
                println!(
                    "device {device_id} was already revoked at {}",
                    revoked.revoked_at.to_rfc3339()
                );
                return Ok(());
            }
            println!("device {device_id} revoked");
            Ok(())
        }
        Command::Token(command) => run_token(command).await,
        Command::User(command) => run_user(command).await,
        Command::Policy(PolicyCommand::Set { store, file }) => {
            let config = CollectorConfig::load(&store.overrides())?;
            let (text, _) = palisade_shared::Policy::load_file(&file)?;
            let store = open_store(&config, Creating::Never).await?;
            let key = state::load_or_create_policy_key(&config.state_dir)?;
            let record = server::policy::set_policy(&store, &key, &text, &cli_actor()).await?;
            println!(
                "policy {} version {} is now current (revision {})",
                record.policy_id, record.policy_version, record.revision
            );
            Ok(())
        }
    }
}
