//! Who is asking: browser sessions, API keys, the open single-user mode, and the cross-origin
//! guard for browser requests. The service layer receives a `Caller` and never looks at HTTP.

pub mod keys;
pub mod origin;
pub mod password;
pub mod sessions;
pub mod signing;

use crate::storage::StorageError;

/// What can go wrong in this layer; the service layer turns it into its own error.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Valid credentials without the right (403).
    #[error("{0}")]
    Forbidden(String),
    /// No room to hash a password now; try again after the given seconds.
    #[error("{message}")]
    Busy { message: String, retry_after_s: u64 },
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A session store failure.
pub fn session_error(e: tower_sessions::session::Error) -> StorageError {
    StorageError::Session(e.to_string())
}

/// The account that data made without credentials belongs to (AUTH_REQUIRED=false, and
/// everything stored before accounts existed). It has no row and cannot log in.
pub const LOCAL_ACCOUNT: &str = "local";

/// The session key holding the logged-in account's id.
pub const SESSION_ACCOUNT: &str = "account_id";
/// When the session logged in (Unix ms): it is over once its account's `sessions_since` is later.
pub const SESSION_SINCE: &str = "since";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn parse(s: &str) -> Role {
        if s == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

/// How the caller proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Session,
    ApiKey,
    /// No credentials, AUTH_REQUIRED=false: the local owner.
    Open,
}

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub account_id: String,
    pub username: String,
    pub role: Role,
    pub via: Via,
}

impl Caller {
    pub fn local() -> Caller {
        Caller { account_id: LOCAL_ACCOUNT.into(), username: LOCAL_ACCOUNT.into(), role: Role::Admin, via: Via::Open }
    }

    pub fn require_admin(&self) -> Result<(), AuthError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::User => Err(AuthError::Forbidden("this needs an admin account".into())),
        }
    }
}
