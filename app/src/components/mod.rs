pub mod account;
pub mod chat;
pub mod home;
pub mod status;
