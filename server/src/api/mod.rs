//! The REST API: thin axum handlers over the service layer.

pub mod auth;
pub mod chat;
pub mod error;
pub mod gallery;
pub mod health;
pub mod history;
pub mod images;
pub mod json;
pub mod openai;
pub mod openapi;
mod openapi_rules;
pub mod pages;
pub mod templates;
