//! The command line of `palisade-collector`: every subcommand that touches
//! the store takes the same `--config`, `--state-dir` and `--database-url`
//! flags, so an operator never has to think about which one reads what.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::Utc;
use clap::{Args, Parser, Subcommand};

use crate::app::{AppState, Limits};
use crate::config::{CollectorConfig, Overrides, TlsSetting};
use crate::ingest::batcher::Batcher;
use crate::operations;
use crate::server::{self, Transport};
use crate::store::{AuditEntry, NewApiToken, Role, Store};
use crate::{secrets, state};

/// The baseline policy served until an operator sets another.
pub const BASELINE_POLICY: &str = include_str!("../../config/policy.toml");

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
    /// List enrollment secrets (never the secrets themselves).
    List {
        #[command(flatten)]
        store: StoreArgs,
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

async fn open_store(config: &CollectorConfig) -> anyhow::Result<Store> {
    state::ensure_state_dir(&config.state_dir)?;
    Store::open(&config.database_url).await.with_context(|| {
        format!(
            "cannot open the database {}",
            redact_url(&config.database_url)
        )
    })
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
            let store = open_store(&config).await?;
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
            let store = open_store(&config).await?;
            let expires_at = match expires {
                Some(duration) => Some(
                    Utc::now()
                        + chrono::Duration::from_std(duration).context("--expires is too long")?,
                ),
                None => None,
            };
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
            let store = open_store(&config).await?;
            for secret in store.list_enrollment_secrets().await? {
                println!(
                    "{}\tuses {}/{}\texpires {}\t{}",
                    secret.id,
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
        Command::Device(DeviceCommand::Revoke { store, device_id }) => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config).await?;
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
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            if let Err(errors) = palisade_shared::Policy::parse(&text) {
                bail!(
                    "policy file {} is invalid:\n{}",
                    file.display(),
                    errors.render_for_file(&file.display().to_string())
                );
            }
            let store = open_store(&config).await?;
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

async fn run_token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { store, role, label } => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config).await?;
            let token = secrets::generate("plt");
            let role = Role::from(role);
            let now = Utc::now();
            store
                .create_api_token(&NewApiToken {
                    id: token.id.clone(),
                    token_hash: token.hash,
                    role,
                    label: label.clone(),
                    created_at: now,
                })
                .await?;
            store
                .append_audit(&AuditEntry {
                    at: now,
                    actor: cli_actor(),
                    action: "token.create".into(),
                    target: token.id.clone(),
                    details_json: serde_json::json!({ "role": role.as_str(), "label": label })
                        .to_string(),
                })
                .await?;
            // The only place the token is ever shown.
            println!("{}", token.text);
            eprintln!(
                "{} token {} created; it is shown once and stored only as a hash",
                role.as_str(),
                token.id
            );
            Ok(())
        }
        TokenCommand::List { store } => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config).await?;
            for token in store.list_api_tokens().await? {
                println!(
                    "{}\t{}\tcreated {}\t{}\t{}",
                    token.id,
                    token.role.as_str(),
                    token.created_at.to_rfc3339(),
                    token.revoked_at.map_or("active".to_owned(), |t| format!(
                        "revoked {}",
                        t.to_rfc3339()
                    )),
                    token.label
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { store, id } => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config).await?;
            let now = Utc::now();
            if !store.revoke_api_token(&id, now).await? {
                bail!("no API token {id:?}");
            }
            store
                .append_audit(&AuditEntry {
                    at: now,
                    actor: cli_actor(),
                    action: "token.revoke".into(),
                    target: id.clone(),
                    details_json: "{}".into(),
                })
                .await?;
            println!("API token {id} revoked");
            Ok(())
        }
    }
}

/// The most characters a user name may have: a name, not a document.
const MAX_USERNAME_CHARS: usize = 64;

async fn run_user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            store,
            username,
            role,
        } => {
            let username = username.trim().to_owned();
            if username.is_empty()
                || username.chars().count() > MAX_USERNAME_CHARS
                || username.chars().any(char::is_control)
            {
                bail!(
                    "--username must be 1 to {MAX_USERNAME_CHARS} characters without control \
                     characters"
                );
            }
            let config = CollectorConfig::load(&store.overrides())?;
            let password = read_new_password()?;
            crate::web::auth::check_new_password(&password).map_err(anyhow::Error::msg)?;
            let hash = crate::web::auth::hash_password(&password)
                .map_err(|err| anyhow::anyhow!("cannot hash the password: {err}"))?;
            drop(password);
            let store = open_store(&config).await?;
            let role = Role::from(role);
            let now = Utc::now();
            let created = store
                .create_admin_user(&crate::store::NewAdminUser {
                    username: username.clone(),
                    password_hash: hash,
                    role,
                    created_at: now,
                })
                .await?;
            if !created {
                bail!("a user named {username:?} already exists");
            }
            store
                .append_audit(&AuditEntry {
                    at: now,
                    actor: cli_actor(),
                    action: "user.create".into(),
                    target: username.clone(),
                    details_json: serde_json::json!({ "role": role.as_str() }).to_string(),
                })
                .await?;
            println!("{} user {username} created", role.as_str());
            Ok(())
        }
        UserCommand::List { store } => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config).await?;
            let now = Utc::now();
            for user in store.list_admin_users().await? {
                let state = match user.locked_until {
                    Some(until) if until > now => format!("locked until {}", until.to_rfc3339()),
                    _ => "active".to_owned(),
                };
                println!(
                    "{}\t{}\tcreated {}\t{state}",
                    user.username,
                    user.role.as_str(),
                    user.created_at.to_rfc3339()
                );
            }
            Ok(())
        }
        UserCommand::Delete { store, username } => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config).await?;
            if !store.delete_admin_user(&username).await? {
                bail!("no user {username:?}");
            }
            store
                .append_audit(&AuditEntry {
                    at: Utc::now(),
                    actor: cli_actor(),
                    action: "user.delete".into(),
                    target: username.clone(),
                    details_json: "{}".into(),
                })
                .await?;
            println!("user {username} deleted");
            Ok(())
        }
    }
}

/// The new user's password: the first line of standard input when it is
/// not a terminal (scripts, tests), else typed twice without echo.
fn read_new_password() -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&line)
            .to_owned();
        return Ok(password);
    }
    let first = rpassword::prompt_password("Password (at least 12 characters): ")
        .context("cannot read the password")?;
    let second =
        rpassword::prompt_password("Password again: ").context("cannot read the password")?;
    if first != second {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

async fn serve(config: CollectorConfig) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let store = open_store(&config).await?;
    let policy_key = state::load_or_create_policy_key(&config.state_dir)?;
    ensure_signed_policy(&store, &policy_key, &config).await?;

    let transport = match &config.tls {
        TlsSetting::Files {
            cert_file,
            key_file,
        } => Transport::Tls(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(cert_file, key_file)
                .await
                .with_context(|| {
                    format!(
                        "cannot load TLS certificate {} and key {}",
                        cert_file.display(),
                        key_file.display()
                    )
                })?,
        ),
        TlsSetting::SelfSigned => {
            let (cert, key) = state::self_signed_tls(&config.state_dir)?;
            Transport::Tls(axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key).await?)
        }
        TlsSetting::None => Transport::Plain,
    };
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let scheme = if matches!(transport, Transport::Plain) {
        "http"
    } else {
        "https"
    };

    let (batcher, writer) = Batcher::start(store.clone());
    let retention = spawn_retention(store.clone(), config.retention_days);
    let app_state = AppState {
        store,
        batcher,
        policy_key: Arc::new(policy_key),
        metrics: Arc::default(),
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            clock_skew_seconds: config.clock_skew_seconds,
        },
        enroll_guard: Arc::default(),
        token_guard: Arc::default(),
        web: crate::web::WebSettings {
            // Plain HTTP is allowed on loopback only (config.rs); there a
            // browser would drop a `Secure` cookie.
            secure_cookies: !matches!(transport, Transport::Plain),
            unknown_users: Arc::default(),
            stale_after: chrono::TimeDelta::hours(i64::from(config.stale_after_hours)),
        },
    };
    tracing::info!(%address, database = %redact_url(&config.database_url), "collector listening");
    // A line for people and scripts: the URL to reach this collector.
    eprintln!("palisade-collector listening on {scheme}://{address}");
    server::serve(listener, app_state, transport, shutdown).await?;
    retention.abort();
    // The router and its batcher handles are gone; the writer drains what is
    // queued and exits.
    writer.await.context("the report writer task failed")?;
    tracing::info!("collector stopped");
    Ok(())
}

/// Makes sure the current policy is signed by the current key: on first start
/// (no policy yet) it stores the configured or baseline policy; if the key
/// was replaced, it re-signs the current policy.
async fn ensure_signed_policy(
    store: &Store,
    key: &ed25519_dalek::SigningKey,
    config: &CollectorConfig,
) -> anyhow::Result<()> {
    let current = store.current_policy().await?;
    let text = match current {
        Some(record) => {
            let signed_by_current =
                palisade_shared::Envelope::from_json(&record.envelope, usize::MAX)
                    .ok()
                    .is_some_and(|envelope| {
                        let public = key.verifying_key();
                        let id = palisade_shared::KeyId::of(&public);
                        envelope
                            .verify(palisade_shared::envelope::POLICY_PAYLOAD_TYPE, |k| {
                                (k == &id).then_some(public)
                            })
                            .is_ok()
                    });
            if signed_by_current {
                return Ok(());
            }
            tracing::warn!("the stored policy is not signed by the current key; re-signing it");
            record.text
        }
        None => match &config.policy_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read policy_file {}", path.display()))?,
            None => BASELINE_POLICY.to_owned(),
        },
    };
    server::policy::set_policy(store, key, &text, "collector").await?;
    Ok(())
}

fn spawn_retention(store: Store, retention_days: u32) -> tokio::task::JoinHandle<()> {
    // Hourly: purging is cheap and an hour of extra retention is immaterial.
    const PURGE_EVERY: Duration = Duration::from_secs(3600);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(PURGE_EVERY);
        loop {
            ticker.tick().await;
            let cutoff = Utc::now() - chrono::Duration::days(i64::from(retention_days));
            match store.purge_reports_before(cutoff).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, retention_days, "purged old raw reports"),
                Err(err) => tracing::error!(error = %err, "purging old reports failed"),
            }
        }
    })
}

/// Registers the SIGTERM and SIGINT handlers now, before anything is
/// announced, so a signal that arrives early is not met by the default action
/// (which would kill the process in the middle of a write), and returns the
/// future that resolves at the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("shutting down: finishing the work in progress");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: finishing the work in progress");
        })
    }
}
