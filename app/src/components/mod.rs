pub mod home;
mod status;
