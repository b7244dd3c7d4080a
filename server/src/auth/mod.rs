//! Who is asking: browser sessions, API keys, the open single-user mode, and the cross-origin
//! guard for browser requests. The service layer receives a `Caller` and never looks at HTTP.

pub mod keys;
pub mod middleware;
pub mod origin;
pub mod password;
pub mod sessions;
pub mod signing;

use crate::{api::error::ApiError, service::error::ServiceError};
use axum::{extract::FromRequestParts, http::request::Parts};

/// The account that data made without credentials belongs to (AUTH_REQUIRED=false, and
/// everything stored before accounts existed). It has no row and cannot log in.
pub const LOCAL_ACCOUNT: &str = "local";

/// The session key holding the logged-in account's id.
pub const SESSION_ACCOUNT: &str = "account_id";

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

    pub fn require_admin(&self) -> Result<(), ServiceError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::User => Err(ServiceError::Forbidden("this needs an admin account".into())),
        }
    }
}

/// Handlers behind `middleware::authenticate` take the caller it found.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ServiceError::Unauthenticated("log in or send an API key".into()).into())
    }
}
