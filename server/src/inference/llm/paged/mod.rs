//! Paged attention: the model rewritten by OpenVINO's SDPAToPagedAttention pass (through our C++
//! shim), with the KV cache in blocks we manage. Lets one step serve several conversations and
//! cut a conversation's cache anywhere.

pub mod blocks;
mod model;
mod shim;

pub use model::{Feed, PagedModel};
