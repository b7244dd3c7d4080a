//! The REST API: thin axum handlers over the service layer.

pub mod health;
