//! Stateless completions for the OpenAI-compatible API: the caller sends the whole conversation
//! each time and keeps it; nothing is stored. Follow-up requests still reuse the KV cache: they
//! are keyed by their opening messages, and the engine reuses the longest common prefix (and
//! re-runs from where two requests differ, so sharing a key is never wrong, only slower).

use super::{error::Result, load::Generating};
use crate::{
    auth::Caller,
    inference::{
        fnv1a,
        llm::{ChatMessage, GenerateRequest, GenerationHandle, GenerationParams, Prompt},
        FNV_OFFSET,
    },
    state::AppState,
};
use tokio::sync::OwnedSemaphorePermit;

/// A generation in flight, holding its place in the chat engine until dropped.
pub struct Running {
    pub handle: GenerationHandle,
    _slot: OwnedSemaphorePermit,
    _generating: Generating,
}

pub fn start(
    state: &AppState,
    caller: &Caller,
    messages: Vec<ChatMessage>,
    params: GenerationParams,
    user: &str,
) -> Result<Running> {
    let engine = state.chat_engine()?;
    let slot = state.chat_slots.try_acquire()?;
    let key = cache_key(&messages, &caller.account_id, user);
    let request = GenerateRequest { conversation: Some(key), prompt: Prompt::Messages(messages), params };
    let handle = engine.generate(request).map_err(|e| super::error::ServiceError::Engine(e.to_string()))?;
    Ok(Running { handle, _slot: slot, _generating: state.chat_slots.generating() })
}

/// The KV cache key: the caller's account and user and the conversation's first two messages (a
/// system prompt and the first question, typically), which stay the same as the conversation
/// grows.
pub fn cache_key(messages: &[ChatMessage], account: &str, user: &str) -> String {
    let parts = messages.iter().take(2).flat_map(|m| [m.role.as_str(), m.content.as_str()]);
    // 0xff never occurs in UTF-8: it marks where one part ends.
    let bytes = [account, user].into_iter().chain(parts).flat_map(|part| part.bytes().chain([0xff]));
    format!("openai:{:016x}", fnv1a(FNV_OFFSET, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_ups_share_a_key_and_other_conversations_do_not() {
        let turn1 = vec![ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")];
        let mut turn2 = turn1.clone();
        turn2.extend([ChatMessage::new("assistant", "Hello!"), ChatMessage::new("user", "And?")]);
        assert_eq!(cache_key(&turn1, "a", ""), cache_key(&turn2, "a", ""));
        assert_ne!(cache_key(&turn1, "a", ""), cache_key(&turn1, "a", "bob"));
        assert_ne!(cache_key(&turn1, "a", ""), cache_key(&turn1, "b", ""));
        assert_ne!(cache_key(&turn1, "ab", ""), cache_key(&turn1, "a", "b"));
        let other = vec![ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Bye")];
        assert_ne!(cache_key(&turn1, "a", ""), cache_key(&other, "a", ""));
        // Boundaries count: ("ab", "c") is not ("a", "bc").
        let a = vec![ChatMessage::new("user", "ab"), ChatMessage::new("user", "c")];
        let b = vec![ChatMessage::new("user", "a"), ChatMessage::new("user", "bc")];
        assert_ne!(cache_key(&a, "a", ""), cache_key(&b, "a", ""));
    }
}
