//! `palisade-agent service`: the daemon as a Windows service.
//!
//! The Service Control Manager starts the exe with the command line it was
//! created with (`sc create PalisadeAgent binPath= "…\palisade-agent.exe
//! service --config …"`); this module connects to the SCM, reports the
//! service's state, and runs [`daemon::run`] exactly as `palisade-agent run`
//! does, with the SCM's Stop or Shutdown control as its shutdown future.
//! There is no second daemon loop here.
//!
//! A service has no console, so it logs to a file: `agent.log` in the state
//! directory unless `--log-file` says otherwise, moved aside past
//! [`log_file::MAX_LOG_BYTES`] at start. Any failure to reach the SCM is an
//! error message on the console (someone ran it by hand); any failure after
//! that is logged and reported to the SCM as a service-specific exit code,
//! which `sc query` shows. The SCM's glue (the `ServiceMain` entry point,
//! whose macro needs `unsafe`) is `sys/service.rs`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use palisade_shared::error_text::describe;
use tokio::sync::Notify;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};

use super::daemon::AgentArgs;
use super::{LogFormatArg, log_file};
use crate::config::LogFormat;
use crate::daemon;
use crate::sys::Host;
use crate::sys::service::{ERROR_FAILED_SERVICE_CONTROLLER_CONNECT, run_dispatcher};

/// The service name the installer (issue 15) creates, and the default for
/// `--service-name`.
pub const SERVICE_NAME: &str = "PalisadeAgent";

/// The log file's name in the state directory.
pub const LOG_FILE_NAME: &str = "agent.log";

/// How long the SCM is told a stop may take. The daemon stops after the
/// write in progress; a check cycle's probes are bounded by their command
/// timeout, so 30 s covers a cycle caught midway. The SCM only uses it to
/// decide when a stopping service is hung.
const STOP_WAIT_HINT: Duration = Duration::from_secs(30);

/// Service-specific exit codes, shown by `sc query` as
/// `SERVICE_EXIT_CODE`.
pub mod service_exit {
    /// The configuration could not be read, or the log file opened.
    pub const SETUP_FAILED: u32 = 2;
    /// The daemon stopped with an error (see the log).
    pub const DAEMON_FAILED: u32 = 1;
}

#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Append the log here [default: agent.log in the state directory].
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// The name the service was created with (`sc create NAME`).
    #[arg(long, value_name = "NAME", default_value = SERVICE_NAME)]
    pub service_name: String,
}

/// What `service_main`, called by the SCM on its own thread, needs from the
/// command line; the SCM's entry point takes no context, so it is here.
static INVOCATION: OnceLock<Invocation> = OnceLock::new();

#[derive(Debug)]
struct Invocation {
    args: ServiceArgs,
    log_format: LogFormatArg,
}

/// Hands the process to the SCM until the service stops. Returns an error
/// when the process was not started by the SCM.
pub fn run(args: &ServiceArgs, log_format: LogFormatArg) -> anyhow::Result<u8> {
    let service_name = args.service_name.clone();
    let _ = INVOCATION.set(Invocation {
        args: args.clone(),
        log_format,
    });
    match run_dispatcher(&service_name, service_main) {
        Ok(()) => Ok(super::exit::COMPLIANT),
        Err(windows_service::Error::Winapi(err))
            if err.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) =>
        {
            anyhow::bail!(
                "`palisade-agent service` runs only when the Service Control Manager starts it \
                 (`sc start {service_name}` or `net start {service_name}`); to run the agent in \
                 this console use `palisade-agent run`"
            )
        }
        Err(err) => Err(anyhow::anyhow!(
            "cannot connect to the Service Control Manager as {service_name}: {err}"
        )),
    }
}

/// The SCM's thread: register for controls, set up, run the daemon, report
/// the end. Never panics on what the system or the config says.
fn service_main(_start_arguments: Vec<OsString>) {
    let Some(invocation) = INVOCATION.get() else {
        return;
    };
    let stop = Arc::new(Notify::new());
    let handler_stop = Arc::clone(&stop);
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            // Stores a permit if the daemon is not waiting yet, so a stop
            // during start-up is not lost.
            handler_stop.notify_one();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    // Without a status handle the SCM cannot be told anything; it gives up
    // on the service after its start timeout.
    let Ok(status) = service_control_handler::register(&invocation.args.service_name, handler)
    else {
        return;
    };
    let exit_code = match serve(invocation, status, stop) {
        Ok(()) => ServiceExitCode::Win32(0),
        Err(failure) => {
            tracing::error!(error = %describe(&*failure.error), "the service stopped with an error");
            ServiceExitCode::ServiceSpecific(failure.code)
        }
    };
    if let Err(err) = report(status, ServiceState::Stopped, exit_code) {
        tracing::warn!(error = %err, "cannot tell the Service Control Manager the service stopped");
    }
}

struct Failure {
    code: u32,
    error: anyhow::Error,
}

/// Reads the config, opens the log, reports Running and runs the daemon.
fn serve(
    invocation: &Invocation,
    status: ServiceStatusHandle,
    stop: Arc<Notify>,
) -> Result<(), Failure> {
    let setup = |error: anyhow::Error| Failure {
        code: service_exit::SETUP_FAILED,
        error,
    };
    let source = invocation.args.agent.source().map_err(setup)?;
    let config = source.load().map_err(|err| setup(err.into()))?;
    let log_path = invocation
        .args
        .log_file
        .clone()
        .unwrap_or_else(|| config.state_dir.join(LOG_FILE_NAME));
    // The state directory is made here, before the daemon would, because
    // the log lives in it.
    crate::state_dir::prepare(&config.state_dir).map_err(setup)?;
    let log = log_file::open_log(&log_path).map_err(setup)?;
    let json =
        matches!(invocation.log_format, LogFormatArg::Json) || config.log_format == LogFormat::Json;
    init_logging(log, json);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        service = %invocation.args.service_name,
        log = %log_path.display(),
        "service starting"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(setup)?;
    report(status, ServiceState::Running, ServiceExitCode::Win32(0))
        .context("cannot tell the Service Control Manager the service runs")
        .map_err(setup)?;
    let shutdown = async move {
        stop.notified().await;
        tracing::info!("stop requested by the Service Control Manager");
        if let Err(err) = report(status, ServiceState::StopPending, ServiceExitCode::Win32(0)) {
            tracing::warn!(error = %err, "cannot tell the Service Control Manager the service is stopping");
        }
    };
    runtime
        .block_on(daemon::run(config, source, Host::system(), shutdown))
        .map_err(|error| Failure {
            code: service_exit::DAEMON_FAILED,
            error,
        })?;
    tracing::info!("service stopped");
    Ok(())
}

/// The daemon's log, into the file (no colour codes in a file).
fn init_logging(file: std::fs::File, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Mutex::new(file))
        .with_ansi(false);
    // Only fails when a logger is already set, which main.rs does not do
    // for this command.
    let _ = if json {
        logger.json().try_init()
    } else {
        logger.try_init()
    };
}

/// Tells the SCM the service's state. While running it takes Stop and
/// Shutdown; while stopping or stopped, nothing.
fn report(
    status: ServiceStatusHandle,
    state: ServiceState,
    exit_code: ServiceExitCode,
) -> windows_service::Result<()> {
    let (controls_accepted, wait_hint) = match state {
        ServiceState::Running => (
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
            Duration::ZERO,
        ),
        ServiceState::StopPending => (ServiceControlAccept::empty(), STOP_WAIT_HINT),
        _ => (ServiceControlAccept::empty(), Duration::ZERO),
    };
    status.set_service_status(ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted,
        exit_code,
        checkpoint: 0,
        wait_hint,
        process_id: None,
    })
}
