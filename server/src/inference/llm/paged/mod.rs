//! Paged attention: the model rewritten by OpenVINO's SDPAToPagedAttention pass (through our C++
//! shim), with the KV cache in blocks we manage. Lets one step serve several conversations, cut a
//! conversation's cache anywhere, and share the blocks of a common prompt prefix between them.

pub mod blocks;
mod model;
pub mod sequence;
mod shim;

pub use model::{Feed, PagedModel};
