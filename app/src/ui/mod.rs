//! Pure helpers the pages use on both sides: the SSE reader, the Markdown renderer, the theme.

pub mod markdown;
pub mod sse;
pub mod theme;
