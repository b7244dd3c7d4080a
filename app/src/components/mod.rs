pub mod account;
pub mod home;
mod status;
