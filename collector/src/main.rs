//! The `palisade-collector` binary: parse the command line, set up logging
//! and the TLS provider, run the subcommand, print any error chain.

use std::process::ExitCode;

use clap::Parser as _;
use palisade_collector::cli::{self, Cli, LogFormat};
use palisade_shared::error_text::describe;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal; logs in files and pipes stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    // One crypto provider in the whole process (ring; see
    // ../shared/test-environments.md): rustls refuses to guess when two are
    // linked, so install it before anything builds a TLS config.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("palisade-collector: a TLS crypto provider was already installed");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("palisade-collector: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("palisade-collector: {}", describe(&*err));
            ExitCode::FAILURE
        }
    }
}
