//! One module per subcommand; this file holds the clap tree and dispatches.

use clap::{Parser, Subcommand};

/// oxrl: LLM post-training in one binary.
#[derive(Parser, Debug)]
#[command(name = "oxrl", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the version.
    Version,
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Version => {
            println!("oxrl {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
