//! Accounts: whether they are required, who may sign up, how long a session lasts, and the key
//! that signs share links.

use super::{parse_bool, Secret};
use clap::{ArgAction, Args};

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Accounts")]
pub struct AuthConfig {
    /// Require an account (session or API key) for everything but health, login and static files
    /// (true/false). `false` is for one person on their own machine: requests without credentials
    /// then act as the local owner.
    #[arg(id = "auth_required", long = "auth-required", env = "AUTH_REQUIRED", default_value = "true",
          action = ArgAction::Set, value_parser = |s: &str| parse_bool("AUTH_REQUIRED", s), global = true)]
    pub required: bool,

    /// Anyone may sign up (true/false). With false, only the first account (the admin) signs
    /// itself up; an admin makes the others (`POST /admin/accounts`).
    #[arg(long, env = "OPEN_REGISTRATION", default_value = "true", action = ArgAction::Set,
          value_parser = |s: &str| parse_bool("OPEN_REGISTRATION", s), global = true)]
    pub open_registration: bool,

    /// Days a browser session lasts without being used.
    #[arg(long, env = "SESSION_DAYS", default_value_t = 14,
          value_parser = clap::value_parser!(u32).range(1..=365), global = true)]
    pub session_days: u32,

    /// Key that signs share links (any text); default: a random key kept in `DATA_DIR/secret.key`.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true, global = true)]
    pub secret_key: Option<Secret>,
}
