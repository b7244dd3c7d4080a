//! The `server` command line: `serve` (the default) and, as they arrive, tools that use the same
//! engines (`generate`, `imagine`, `bench`, `download-models`, `verify-models`).

use crate::config::Config;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "server", version, about = "Duet: chat and pictures on your own CPU", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Start the web server (the default).
    Serve,
}
