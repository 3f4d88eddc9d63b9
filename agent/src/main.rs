//! The `palisade-agent` binary: parse the command line, run the subcommand,
//! print any error chain, exit with the documented code.

use std::process::ExitCode;

use clap::Parser as _;
use palisade_agent::cli::{self, Cli, Command, exit};
use palisade_shared::error_text::describe;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon's log is its only voice (it never prints to stdout); the
    // one-shot commands print their result and log only problems.
    let default_level = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal; logs in files and pipes stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cli.command.logs_to_stderr() {
        match cli.log_format {
            cli::LogFormatArg::Text => logger.init(),
            cli::LogFormatArg::Json => logger.json().init(),
        }
    }
    match try_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("palisade-agent: {}", describe(&*err));
            ExitCode::from(exit::USAGE)
        }
    }
}

fn try_main(cli: Cli) -> anyhow::Result<u8> {
    // One TLS crypto provider in the process (ring), installed before any
    // client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|err| anyhow::anyhow!("cannot start the async runtime: {err}"))
    };
    match cli.command {
        Command::Check(args) => cli::check::run(&args),
        Command::Enforce(args) => cli::enforce::run(&args),
        Command::Run(args) => runtime()?
            .block_on(cli::daemon::run(&args))
            .map(|()| exit::COMPLIANT),
        Command::Enroll(args) => runtime()?
            .block_on(cli::daemon::enroll(&args))
            .map(|()| exit::COMPLIANT),
        Command::Report(args) => cli::daemon::report(&args),
        Command::Status(args) => runtime()?.block_on(cli::daemon::status(&args)),
        Command::Identity(args) => cli::daemon::identity(&args).map(|()| exit::COMPLIANT),
        Command::Spool(command) => cli::daemon::spool(&command).map(|()| exit::COMPLIANT),
        Command::Nudge(args) => runtime()?.block_on(cli::nudge::run(&args)),
        // The service builds its own runtime on the SCM's thread.
        #[cfg(windows)]
        Command::Service(args) => cli::service::run(&args, cli.log_format),
    }
}
