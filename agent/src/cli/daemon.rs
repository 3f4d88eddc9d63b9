//! The subcommands around the daemon: `run`, `enroll`, `report`,
//! `identity` and `spool list`. They share [`AgentArgs`]: where the config
//! and the state live, so tests and non-root users can run a whole agent in
//! a temporary directory.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use palisade_shared::envelope::{Envelope, REPORT_PAYLOAD_TYPE};
use palisade_shared::error_text::describe;

use crate::config::{AgentConfig, CollectorUrl, ConfigSource, EnrollSecret};
use crate::daemon;
use crate::identity::{Enrollment, Identity, KeyStore};
use crate::sys::Host;

/// Where the agent's config and state are.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Config file (default: the system path, e.g. /etc/palisade/agent.toml, if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory: device key, enrollment, spool, last good policy.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Status socket path.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

impl AgentArgs {
    /// The configuration: the file (if any) with the flags applied.
    pub fn load(&self) -> anyhow::Result<AgentConfig> {
        Ok(self.source()?.load()?)
    }

    /// Where the configuration comes from, for the daemon to re-read.
    pub fn source(&self) -> anyhow::Result<ConfigSource> {
        let state_dir = match &self.state_dir {
            Some(dir) => Some(
                std::path::absolute(dir)
                    .with_context(|| format!("bad --state-dir {}", dir.display()))?,
            ),
            None => None,
        };
        Ok(ConfigSource {
            file: self.config.clone(),
            state_dir,
            socket: self.socket.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Check a prepared tree standing in for `/` instead of this machine,
    /// and watch the files under it (for tests; reports say so nowhere, so
    /// never point a production agent at one).
    #[arg(long, value_name = "DIR", hide = true)]
    pub host_root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// The collector's URL, e.g. https://posture.trust.nhs.uk (default: collector_url from the config).
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// The enrollment secret IT gave you (default: PALISADE_ENROLL_SECRET).
    #[arg(
        long,
        value_name = "SECRET",
        env = "PALISADE_ENROLL_SECRET",
        hide_env_values = true
    )]
    pub secret: String,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Write the signed report envelope here.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Print the status document (JSON, as the socket serves it) instead of a summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IdentityArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// List the reports waiting to be sent.
    List {
        #[command(flatten)]
        agent: AgentArgs,
    },
}

pub async fn run(args: &RunArgs) -> anyhow::Result<()> {
    let source = args.agent.source()?;
    let config = source.load()?;
    let host = match &args.host_root {
        Some(root) => Host::with_root(root),
        None => Host::system(),
    };
    daemon::run(config, source, host, super::shutdown_signal()?).await
}

pub async fn enroll(args: &EnrollArgs) -> anyhow::Result<()> {
    let config = args.agent.load()?;
    let collector = match (&args.collector, &config.collector_url) {
        (Some(url), _) => {
            CollectorUrl::parse(url).map_err(|err| anyhow::anyhow!("--collector: {err}"))?
        }
        (None, Some(url)) => url.clone(),
        (None, None) => bail!("give --collector URL or set collector_url in the config"),
    };
    crate::state_dir::prepare(&config.state_dir)?;
    let identity = Identity::load_or_create(KeyStore::for_this_os(&config.state_dir))?;
    let client = daemon::http::client(&config)?;
    let secret = EnrollSecret::new(args.secret.clone());
    let enrollment = daemon::enroll::enroll(&client, &collector, &secret, &identity).await?;
    enrollment.save(&config.state_dir)?;
    println!(
        "enrolled as {} with {} (key {}, stored in {})",
        enrollment.device_id,
        collector.as_str(),
        identity.key_id(),
        identity.store
    );
    Ok(())
}

/// Runs the checks once and writes the signed envelope without sending it.
/// The report has sequence 0: it is outside the chain, so it can never
/// collide with a report the daemon sends.
pub fn report(args: &ReportArgs) -> anyhow::Result<u8> {
    let config = args.agent.load()?;
    let identity = Identity::load_or_create(KeyStore::for_this_os(&config.state_dir))?;
    let enrollment = Enrollment::load(&config.state_dir)?;
    let pinned = enrollment
        .as_ref()
        .and_then(|e| e.policy_verifying_key().ok());
    let current = daemon::policy::load_last_good(&config.state_dir, pinned.as_ref());
    let host = crate::sys::Host::system();
    let results = crate::checks::run_checks(&host, &current.policy, None);
    let code = super::check::exit_code(&results);
    let mut report = crate::report::standalone_report(&host, &current.policy, results);
    if let Some(enrollment) = &enrollment {
        report.device_id = enrollment.device_id.clone();
    }
    let envelope = Envelope::sign(REPORT_PAYLOAD_TYPE, &report.to_payload(), &identity.key);
    std::fs::write(&args.out, envelope.to_json())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote a report signed by key {} to {}",
        identity.key_id(),
        args.out.display()
    );
    Ok(code)
}

/// Asks the running daemon for its status. Any local user may: the config
/// file may be unreadable to them (it can hold the enrollment secret), so
/// the socket path falls back to the default rather than failing.
pub async fn status(args: &StatusArgs) -> anyhow::Result<u8> {
    let socket = match (&args.agent.socket, args.agent.load()) {
        (Some(socket), _) => socket.clone(),
        (None, Ok(config)) => config.socket_path,
        (None, Err(err)) => {
            let socket = crate::config::default_socket_path();
            tracing::warn!(error = %describe(&*err), socket = %socket.display(), "cannot read the config; trying the default socket");
            socket
        }
    };
    let status = crate::status::fetch_status(&socket).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", crate::status::render_human(&status));
    }
    Ok(super::check::exit_code(&status.checks))
}

pub fn identity(args: &IdentityArgs) -> anyhow::Result<()> {
    let config = args.agent.load()?;
    let Some(identity) = Identity::load(KeyStore::for_this_os(&config.state_dir))? else {
        bail!(
            "no device key yet in {}: it is made at the first `run` or `enroll`",
            config.state_dir.display()
        );
    };
    let enrollment = Enrollment::load(&config.state_dir)?;
    println!(
        "device id:   {}",
        enrollment
            .as_ref()
            .map_or("(not enrolled)".to_owned(), |e| e.device_id.to_string())
    );
    println!("key id:      {}", identity.key_id());
    println!("public key:  {}", identity.public_key_base64());
    println!("key store:   {}", identity.store);
    if let Some(acl) = crate::state_dir::describe_acl(&config.state_dir) {
        println!("state acl:   {acl}");
    }
    if let Some(enrollment) = enrollment {
        println!("collector:   {}", enrollment.collector_url);
    }
    Ok(())
}

pub fn spool(command: &SpoolCommand) -> anyhow::Result<()> {
    let SpoolCommand::List { agent } = command;
    let config = agent.load()?;
    let dir = config.spool_dir();
    // No spool directory yet: nothing was ever spooled.
    let entries = if dir.exists() {
        crate::spool::list_entries(&dir)?
    } else {
        Vec::new()
    };
    if entries.is_empty() {
        println!("the spool is empty");
    }
    for entry in &entries {
        println!(
            "{}\t{} bytes\t{}",
            entry.sequence,
            entry.bytes,
            entry.path.display()
        );
    }
    Ok(())
}
