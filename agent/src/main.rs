//! The `palisade-agent` binary: parse the command line, run the subcommand,
//! print any error chain, exit with the documented code.

use std::process::ExitCode;

use clap::Parser as _;
use palisade_agent::cli::{self, Cli, Command, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match try_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("palisade-agent: {err:#}");
            ExitCode::from(exit::USAGE)
        }
    }
}

fn try_main(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check(args) => cli::check::run(&args),
    }
}
