//! Keeping a conversation inside the model's context window. Policy: whole turns are dropped from
//! the oldest end (a user message with the replies after it); system messages and the newest user
//! turn always stay. If that is still too long, the request fails with the sizes in the message.

use super::template::ChatMessage;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError<E> {
    #[error(
        "the prompt needs {prompt_tokens} tokens but at most {budget} fit in the context; shorten the last message"
    )]
    TooLong { prompt_tokens: usize, budget: usize },
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

/// The longest suffix of the conversation whose prompt has at most `budget` tokens.
/// `encode` renders and tokenizes a list of messages.
pub fn fit<E>(
    messages: &[ChatMessage],
    budget: usize,
    mut encode: impl FnMut(&[ChatMessage]) -> Result<Vec<u32>, E>,
) -> Result<Fitted, ContextError<E>> {
    let (system, turns): (Vec<_>, Vec<_>) = messages.iter().cloned().partition(|m| m.role == "system");
    // Turn boundaries: each user message starts a turn.
    let starts: Vec<usize> = turns.iter().enumerate().filter(|(_, m)| m.role == "user").map(|(i, _)| i).collect();
    let mut candidates = vec![0];
    candidates.extend(starts.iter().copied().filter(|&s| s > 0));
    let mut last = (0, 0);
    for from in candidates {
        let kept: Vec<ChatMessage> = system.iter().cloned().chain(turns[from..].iter().cloned()).collect();
        let ids = encode(&kept).map_err(ContextError::Count)?;
        if ids.len() <= budget {
            return Ok(Fitted { messages: kept, dropped: from, ids });
        }
        last = (ids.len(), from);
    }
    Err(ContextError::TooLong { prompt_tokens: last.0, budget })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(spec: &[(&str, &str)]) -> Vec<ChatMessage> {
        spec.iter().map(|(r, c)| ChatMessage::new(r, *c)).collect()
    }

    /// One token per character of content, plus one per message.
    fn count(m: &[ChatMessage]) -> Result<Vec<u32>, &'static str> {
        Ok(vec![0; m.iter().map(|m| m.content.len() + 1).sum()])
    }

    #[test]
    fn a_conversation_that_fits_is_unchanged() {
        let c = conv(&[("system", "sys"), ("user", "hello"), ("assistant", "hi")]);
        assert_eq!(fit(&c, 100, count).unwrap(), Fitted { messages: c.clone(), dropped: 0, ids: vec![0; 13] });
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
        let fitted = fit(&c, 12, count).unwrap();
        assert_eq!(fitted.messages, conv(&[("system", "S"), ("user", "cc"), ("assistant", "dd"), ("user", "e")]));
        assert_eq!((fitted.dropped, fitted.ids.len()), (2, 10));
        let fitted = fit(&c, 4, count).unwrap();
        assert_eq!(fitted.messages, conv(&[("system", "S"), ("user", "e")]));
    }

    #[test]
    fn a_last_turn_too_long_on_its_own_is_an_error_with_the_sizes() {
        let c = conv(&[("user", "old"), ("user", "a very long question")]);
        let err = fit(&c, 5, count).unwrap_err();
        assert_eq!(err, ContextError::TooLong { prompt_tokens: 21, budget: 5 });
        assert!(err.to_string().contains("needs 21 tokens but at most 5 fit"));
    }

    #[test]
    fn counting_errors_pass_through() {
        let err = fit(&conv(&[("user", "x")]), 5, |_| Err::<Vec<u32>, _>("template broke")).unwrap_err();
        assert_eq!(err, ContextError::Count("template broke"));
    }
}
