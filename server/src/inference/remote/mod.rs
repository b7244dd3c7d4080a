//! Engines in other processes, behind the same traits as the local ones: Duet workers (chat turns
//! routed by conversation, `worker_chat`), and any OpenAI-compatible server (`openai_chat`,
//! `openai_image`): another Duet, OVMS, vLLM, Ollama.

pub mod openai_chat;
pub mod openai_image;
pub mod pool;
pub mod rendezvous;
pub mod wire;
pub mod worker_chat;

pub use openai_chat::OpenAiChat;
pub use openai_image::OpenAiImage;
pub use pool::{Member, Node, Pool, Probe};
pub use worker_chat::WorkerChat;

use std::time::Duration;

/// The HTTP client every remote engine uses: streams may run for minutes, so only connecting
/// has a deadline.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client without TLS settings builds")
}

/// An error's innermost cause (reqwest's own text is only "error sending request").
pub(crate) fn cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = err;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// Splits a byte stream into lines (`\n`, an optional `\r` dropped), across chunk boundaries.
#[derive(Default)]
pub(crate) struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            out.push(String::from_utf8_lossy(&line).into_owned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_whole_across_chunks() {
        let mut lines = Lines::default();
        assert_eq!(lines.push(b"{\"a\":"), Vec::<String>::new());
        assert_eq!(lines.push(b"1}\r\n{\"b\""), vec!["{\"a\":1}"]);
        assert_eq!(lines.push(b":2}\n\n"), vec!["{\"b\":2}", ""]);
        // A multi-byte character split between chunks arrives whole.
        let text = "é\n".as_bytes();
        assert_eq!(lines.push(&text[..1]), Vec::<String>::new());
        assert_eq!(lines.push(&text[1..]), vec!["é"]);
    }
}
