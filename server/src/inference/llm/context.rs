//! Keeping a conversation inside the model's context window. Policy: whole turns are dropped from
//! the oldest end (a user message with the replies after it); system messages and the newest user
//! turn always stay. If that is still too long, the request fails with the sizes in the message.
//!
//! Cost is linear in what is kept, not quadratic in what is sent: each message is tokenized once,
//! on its own, newest first, and the walk stops at the first turn that no longer fits (older ones
//! are never read). The sum of those counts plus the template's tokens per message (measured on
//! the shortest prompt) is an estimate, so the chosen prompt is then rendered and tokenized
//! exactly, a few times at most. Cancellation is checked before every tokenization.

use super::template::ChatMessage;

/// Exact prompts tried after the estimate before settling for the shortest prompt.
const MAX_EXACT_TRIES: usize = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError<E> {
    #[error(
        "the prompt needs {prompt_tokens} tokens but at most {budget} fit in the context; shorten the last message"
    )]
    TooLong { prompt_tokens: usize, budget: usize },
    #[error("the request was cancelled while its prompt was prepared")]
    Cancelled,
    #[error("{0}")]
    Count(E),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fitted {
    pub messages: Vec<ChatMessage>,
    /// Messages dropped from the start of the conversation.
    pub dropped: usize,
    /// The prompt's token ids.
    pub ids: Vec<u32>,
}

/// Messages and the ids of their prompt.
type Prompt = (Vec<ChatMessage>, Vec<u32>);

/// What fitting needs from the tokenizer and chat template.
pub trait Tokens {
    type Error;
    /// Tokens of one message's content on its own: its share of the prompt, less the template's.
    fn count(&mut self, message: &ChatMessage) -> Result<usize, Self::Error>;
    /// The exact prompt of these messages (rendered with the generation prompt, tokenized).
    fn encode(&mut self, messages: &[ChatMessage]) -> Result<Vec<u32>, Self::Error>;
    /// The caller gave up: stop working on this request.
    fn cancelled(&self) -> bool;
}

/// The longest suffix of the conversation (whole turns) whose prompt has at most `budget` tokens,
/// as far as the estimate can tell: a turn is kept when its estimated cost fits, so in rare cases
/// one turn fewer than would just fit is kept, never one too many.
pub fn fit<T: Tokens>(
    messages: &[ChatMessage],
    budget: usize,
    tokens: &mut T,
) -> Result<Fitted, ContextError<T::Error>> {
    let (system, turns): (Vec<_>, Vec<_>) = messages.iter().cloned().partition(|m| m.role == "system");
    // Where each turn starts: a user message (and the very first message, whatever it is).
    let mut starts = vec![0];
    starts.extend(turns.iter().enumerate().skip(1).filter(|(_, m)| m.role == "user").map(|(i, _)| i));
    let kept =
        |from: usize| -> Vec<ChatMessage> { system.iter().cloned().chain(turns[from..].iter().cloned()).collect() };
    let exact = |tokens: &mut T, from: usize| -> Result<Prompt, ContextError<T::Error>> {
        if tokens.cancelled() {
            return Err(ContextError::Cancelled);
        }
        let messages = kept(from);
        let ids = tokens.encode(&messages).map_err(ContextError::Count)?;
        Ok((messages, ids))
    };
    let newest = starts.len() - 1;
    let (shortest, shortest_ids) = exact(tokens, starts[newest])?;
    if shortest_ids.len() > budget {
        return Err(ContextError::TooLong { prompt_tokens: shortest_ids.len(), budget });
    }
    let done = |messages, ids, from| Ok(Fitted { messages, dropped: from, ids });
    if newest == 0 {
        return done(shortest, shortest_ids, 0);
    }
    // The template's tokens per message, from the shortest prompt (rounded up: estimates err long).
    let mut content = 0;
    for m in &shortest {
        content += count(tokens, m)?;
    }
    let per_message = shortest_ids.len().saturating_sub(content).div_ceil(shortest.len());

    // Older turns while their estimated cost fits.
    let mut estimate = shortest_ids.len();
    let mut oldest = newest;
    'turns: for t in (0..newest).rev() {
        let mut cost = 0;
        for m in &turns[starts[t]..starts[t + 1]] {
            cost += count(tokens, m)? + per_message;
            if estimate + cost > budget {
                break 'turns;
            }
        }
        estimate += cost;
        oldest = t;
    }
    // The estimate is checked exactly; when it was short, one more turn goes, a few times at most.
    for t in (oldest..newest).take(MAX_EXACT_TRIES) {
        let (messages, ids) = exact(tokens, starts[t])?;
        if ids.len() <= budget {
            return done(messages, ids, starts[t]);
        }
    }
    done(shortest, shortest_ids, starts[newest])
}

fn count<T: Tokens>(tokens: &mut T, message: &ChatMessage) -> Result<usize, ContextError<T::Error>> {
    if tokens.cancelled() {
        return Err(ContextError::Cancelled);
    }
    tokens.count(message).map_err(ContextError::Count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(spec: &[(&str, &str)]) -> Vec<ChatMessage> {
        spec.iter().map(|(r, c)| ChatMessage::new(r, *c)).collect()
    }

    /// One token per character of content plus one per message; records what it was asked.
    #[derive(Default)]
    struct Chars {
        counted: Vec<String>,
        encoded: usize,
        cancel_after: Option<usize>,
        /// Extra tokens the exact prompt has beyond the estimate's arithmetic.
        surprise: usize,
    }

    impl Tokens for Chars {
        type Error = &'static str;
        fn count(&mut self, m: &ChatMessage) -> Result<usize, &'static str> {
            self.counted.push(m.content.clone());
            Ok(m.content.len())
        }
        fn encode(&mut self, m: &[ChatMessage]) -> Result<Vec<u32>, &'static str> {
            self.encoded += 1;
            let n: usize = m.iter().map(|m| m.content.len() + 1).sum();
            Ok(vec![0; n + if m.len() > 2 { self.surprise } else { 0 }])
        }
        fn cancelled(&self) -> bool {
            self.cancel_after.is_some_and(|n| self.counted.len() >= n)
        }
    }

    #[test]
    fn a_conversation_that_fits_is_unchanged() {
        let c = conv(&[("system", "sys"), ("user", "hello"), ("assistant", "hi")]);
        assert_eq!(
            fit(&c, 100, &mut Chars::default()).unwrap(),
            Fitted { messages: c.clone(), dropped: 0, ids: vec![0; 13] }
        );
        let two_turns = conv(&[("user", "a"), ("assistant", "b"), ("user", "c")]);
        let mut t = Chars::default();
        assert_eq!(fit(&two_turns, 100, &mut t).unwrap().messages, two_turns);
        assert_eq!(t.encoded, 2, "the shortest prompt, then the whole one");
    }

    #[test]
    fn oldest_whole_turns_go_first_and_the_system_prompt_stays() {
        let c = conv(&[
            ("system", "S"),
            ("user", "aaaa"),
            ("assistant", "bbbb"),
            ("user", "cc"),
            ("assistant", "dd"),
            ("user", "e"),
        ]);
        // Everything: 2+5+5+3+3+2 = 20. Without the first turn: 2+3+3+2 = 10.
        let fitted = fit(&c, 12, &mut Chars::default()).unwrap();
        assert_eq!(fitted.messages, conv(&[("system", "S"), ("user", "cc"), ("assistant", "dd"), ("user", "e")]));
        assert_eq!((fitted.dropped, fitted.ids.len()), (2, 10));
        let fitted = fit(&c, 4, &mut Chars::default()).unwrap();
        assert_eq!(fitted.messages, conv(&[("system", "S"), ("user", "e")]));
        assert_eq!(fit(&c, 20, &mut Chars::default()).unwrap().dropped, 0);
    }

    #[test]
    fn turns_older_than_the_first_that_does_not_fit_are_never_tokenized() {
        let mut c = vec![ChatMessage::new("system", "S")];
        for i in 0..1000 {
            c.push(ChatMessage::new("user", format!("question {i}")));
            c.push(ChatMessage::new("assistant", format!("answer {i}")));
        }
        c.push(ChatMessage::new("user", "last"));
        let mut t = Chars::default();
        let fitted = fit(&c, 100, &mut t).unwrap();
        assert!(fitted.ids.len() <= 100 && fitted.ids.len() > 70, "{}", fitted.ids.len());
        assert!(t.counted.len() < 20, "counted {} messages", t.counted.len());
        assert!(!t.counted.iter().any(|c| c == "question 0"));
        assert!(t.encoded <= 2, "{} exact prompts", t.encoded);
    }

    #[test]
    fn an_estimate_that_was_short_drops_one_more_turn() {
        let c = conv(&[("user", "aaaa"), ("assistant", "bbbb"), ("user", "cc"), ("assistant", "dd"), ("user", "e")]);
        // Shortest prompt: 2 tokens, 1 of them the template's. Both older turns are estimated at
        // 2 + (3+3) + (5+5) = 18 <= 18, but the exact prompt has 5 tokens more (23): the oldest
        // turn goes after all (3+3+2 = 8, +5 = 13 fits).
        let mut t = Chars { surprise: 5, ..Default::default() };
        let fitted = fit(&c, 18, &mut t).unwrap();
        assert_eq!(fitted.messages, conv(&[("user", "cc"), ("assistant", "dd"), ("user", "e")]));
        assert_eq!(fitted.ids.len(), 13);
    }

    #[test]
    fn a_last_turn_too_long_on_its_own_is_an_error_with_the_sizes() {
        let c = conv(&[("user", "old"), ("user", "a very long question")]);
        let mut t = Chars::default();
        let err = fit(&c, 5, &mut t).unwrap_err();
        assert_eq!(err, ContextError::TooLong { prompt_tokens: 21, budget: 5 });
        assert!(err.to_string().contains("needs 21 tokens but at most 5 fit"));
        assert!(t.counted.is_empty(), "nothing else is read once the shortest prompt is too long");
    }

    #[test]
    fn cancellation_stops_the_walk() {
        let mut c = Vec::new();
        for i in 0..100 {
            c.push(ChatMessage::new("user", format!("q{i}")));
        }
        let mut t = Chars { cancel_after: Some(3), ..Default::default() };
        assert_eq!(fit(&c, 10_000, &mut t).unwrap_err(), ContextError::Cancelled);
        assert_eq!(t.counted.len(), 3);
    }

    #[test]
    fn counting_errors_pass_through() {
        struct Broken;
        impl Tokens for Broken {
            type Error = &'static str;
            fn count(&mut self, _: &ChatMessage) -> Result<usize, &'static str> {
                Err("template broke")
            }
            fn encode(&mut self, _: &[ChatMessage]) -> Result<Vec<u32>, &'static str> {
                Err("template broke")
            }
            fn cancelled(&self) -> bool {
                false
            }
        }
        assert_eq!(fit(&conv(&[("user", "x")]), 5, &mut Broken).unwrap_err(), ContextError::Count("template broke"));
    }
}
