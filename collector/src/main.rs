//! `palisade-collector`: the HTTPS service that enrolls devices, verifies and
//! stores their signed reports, serves policy, and shows IT the fleet.
//!
//! Only the command-line surface exists so far; the service itself is the
//! subject of the collector issue. Running a subcommand says so plainly
//! rather than pretending to work.

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "palisade-collector", version, about)]
enum Command {
    /// Run the HTTPS collector (not built yet).
    Serve,
}

fn main() -> ExitCode {
    match Command::parse() {
        Command::Serve => {
            eprintln!(
                "palisade-collector: `serve` is not implemented yet; see the collector issue"
            );
            ExitCode::from(2)
        }
    }
}
