pub mod account;
pub mod chat;
pub mod gallery;
pub mod home;
pub mod status;
pub mod studio;
