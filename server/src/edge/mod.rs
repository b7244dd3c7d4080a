//! What every request passes through before any route: the host it is addressed to (DNS
//! rebinding), the client's address (for per-address limits), the security headers on every
//! answer, the guard that ends a page render that hangs or panics, and the 400 for server-function
//! arguments that cannot be read.

pub mod client;
pub mod headers;
pub mod hosts;
pub mod metrics;
pub mod render;
pub mod server_fns;
