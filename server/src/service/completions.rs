//! Stateless completions for the OpenAI-compatible API: the caller sends the whole conversation
//! each time and keeps it; nothing is stored. Follow-up requests still reuse the KV cache: they
//! are keyed by their opening messages, and the engine reuses the longest common prefix (and
//! re-runs from where two requests differ, so sharing a key is never wrong, only slower).

use super::{
    error::{Result, ServiceError},
    limits::{Admission, Generation, Made, UsageMeter},
    load::{Entry, Generating, Slot},
    validate,
};
use crate::{
    auth::Caller,
    inference::{
        fnv1a,
        llm::{
            Canceller, ChatMessage, Completion, Failure, GenerateRequest, GenerationEvent, GenerationHandle,
            GenerationParams, Prompt,
        },
        FNV_OFFSET,
    },
    service::AppState,
};

/// A generation in flight, holding its place in the chat engine and in the caller's limits
/// until dropped. However it ends (done, failed, cancelled, its client gone), what it generated
/// is counted against the caller's daily quota exactly once, as `next` reads the end.
pub struct Running {
    handle: GenerationHandle,
    _slot: Slot,
    _generating: Generating,
    _admission: Admission,
    meter: Meter,
}

impl Running {
    /// The next event of the generation; its end is metered here.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        let event = self.handle.next().await;
        match &event {
            Some(GenerationEvent::Done(c)) => self.meter.record(c.completion_tokens),
            Some(GenerationEvent::Failed(f)) => self.meter.record(f.completion_tokens),
            _ => {}
        }
        event
    }

    /// The final result; the pieces along the way are skipped.
    pub async fn completion(mut self) -> std::result::Result<Completion, Failure> {
        while let Some(event) = self.next().await {
            match event {
                GenerationEvent::Done(c) => return Ok(c),
                GenerationEvent::Failed(f) => return Err(f),
                _ => {}
            }
        }
        Err(Failure::internal("the chat engine stopped"))
    }

    pub fn canceller(&self) -> Canceller {
        self.handle.canceller()
    }

    /// Stop it (its caller is gone) and, in a task of its own, read it to its end so what it
    /// generated is still counted; its slot and limits are held until the engine has stopped.
    pub fn abandon(self) {
        self.handle.cancel();
        tokio::spawn(async move {
            let _ = self.completion().await;
        });
    }
}

/// Counts a completion's tokens against its owner's daily quota, once.
struct Meter {
    usage: UsageMeter,
    recorded: bool,
}

impl Meter {
    fn record(&mut self, completion_tokens: usize) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let usage = self.usage.clone();
        tokio::spawn(async move {
            if let Err(err) = usage.count(Made::tokens(completion_tokens as u64)).await {
                tracing::warn!(error = %err, "could not count the completion against the daily quota");
            }
        });
    }
}

/// Start a completion for the caller; `user` is OpenAI's end-user field (empty: none).
pub async fn start(
    state: &AppState,
    caller: &Caller,
    messages: Vec<ChatMessage>,
    mut params: GenerationParams,
    user: &str,
) -> Result<Running> {
    let engine = state.chat_engine()?;
    let user = validate::user_id("user", Some(user.to_string()).filter(|u| !u.is_empty()))?;
    if let Some(user) = &user {
        state.limits.user_request(&caller.account_id, user).await?;
    }
    let (admission, tokens_left) =
        state.limits.admit(&state.db, &caller.account_id, user.as_deref(), Generation::Chat).await?;
    if let Some(left) = tokens_left {
        params.max_new_tokens = params.max_new_tokens.min(left.try_into().unwrap_or(usize::MAX));
    }
    // Waits its turn in the chat queue (quietly: OpenAI's stream has no event for it); a caller
    // who goes away leaves the queue with this future.
    let fairness = format!("{}/{}", caller.account_id, user.as_deref().unwrap_or(""));
    let slot = match state.chat_slots.enter(&fairness)? {
        Entry::Now(slot) => slot,
        Entry::Queued(waiter) => waiter.ready().await?,
    };
    let key = cache_key(&messages, &caller.account_id, user.as_deref().unwrap_or(""));
    let request = GenerateRequest { conversation: Some(key), prompt: Prompt::Messages(messages), params };
    let mut handle = engine.generate(request).map_err(|e| ServiceError::Engine(e.to_string()))?;
    // A prompt that cannot fit is the caller's error, answered before any reply starts.
    handle.admitted().await.map_err(|f| ServiceError::from_failure(f, "messages"))?;
    Ok(Running {
        handle,
        _slot: slot,
        _generating: state.chat_slots.generating(),
        meter: Meter { usage: admission.meter(), recorded: false },
        _admission: admission,
    })
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
