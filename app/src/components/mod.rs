pub mod account;
pub mod chat;
pub mod gallery;
pub mod home;
pub mod settings;
pub mod status;
pub mod studio;
pub mod templates;
