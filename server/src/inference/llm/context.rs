//! Keeping a conversation inside the model's context window. Policy: whole turns are dropped from
//! the oldest end (a user message with the replies after it); system messages and the newest user
//! turn always stay. If that is still too long, the request fails with the sizes in the message.
//! The window slides in blocks (`window`): once turns must go, they go down to half the budget,
//! and the next requests keep that start (the `anchor`) while it fits, so they reuse the cache.
//!
//! Cost is bounded by the window, not by what is sent: the shortest prompt is measured only until
//! it is clearly too long, each older message is tokenized once, on its own, newest first, and
//! only until its turn no longer fits (older ones are never read). The sum of those counts plus
//! the template's tokens per message (measured on the shortest prompt) is an estimate, so the
//! chosen prompt is then rendered and tokenized exactly, a few times at most. Cancellation is
//! checked before every tokenization.

use super::{
    template::ChatMessage,
    window::{low_water, message_key},
};

/// Exact prompts tried after the estimate before settling for the shortest prompt.
const MAX_EXACT_TRIES: usize = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError<E> {
    #[error(
        "the prompt needs {prompt_tokens} tokens but at most {budget} fit in the context; shorten the last message"
    )]
    TooLong { prompt_tokens: usize, budget: usize },
    /// Counting stopped once the prompt was clearly too long.
    #[error(
        "the prompt needs more than {at_least} tokens but at most {budget} fit in the context; shorten the last message"
    )]
    FarTooLong { at_least: usize, budget: usize },
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
    /// Where this window starts (the key of its first turn's message), for the next request.
    pub anchor: Option<u64>,
}

/// A prompt measured against a limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Measured {
    /// Within the limit: its token ids.
    Fits(Vec<u32>),
    /// Past it: `tokens` exactly, or (not `exact`) more than `tokens`.
    Exceeds { tokens: usize, exact: bool },
}

/// What fitting needs from the tokenizer and chat template.
pub trait Tokens {
    type Error;
    /// Tokens of one message's content on its own (its share of the prompt, less the
    /// template's); counting may stop once past `limit`, answering any number above it.
    fn count(&mut self, message: &ChatMessage, limit: usize) -> Result<usize, Self::Error>;
    /// The prompt of these messages (rendered with the generation prompt), if it has at most
    /// `limit` tokens; measuring may stop once it is clearly past.
    fn prompt(&mut self, messages: &[ChatMessage], limit: usize) -> Result<Measured, Self::Error>;
    /// The caller gave up: stop working on this request.
    fn cancelled(&self) -> bool;
}

/// The conversation's window: all of it when it fits; else the window that started at `anchor`
/// (the last request's start) while that still fits; else whole turns cut from the oldest end
/// down to the low-water mark (half the budget), as far as the estimate can tell (a turn is kept
/// when its estimated cost fits). Never more than `budget` tokens.
pub fn fit<T: Tokens>(
    messages: &[ChatMessage],
    budget: usize,
    anchor: Option<u64>,
    tokens: &mut T,
) -> Result<Fitted, ContextError<T::Error>> {
    let (system, turns): (Vec<_>, Vec<_>) = messages.iter().cloned().partition(|m| m.role == "system");
    // Where each turn starts: a user message (and the very first message, whatever it is).
    let mut starts = vec![0];
    starts.extend(turns.iter().enumerate().skip(1).filter(|(_, m)| m.role == "user").map(|(i, _)| i));
    let kept =
        |from: usize| -> Vec<ChatMessage> { system.iter().cloned().chain(turns[from..].iter().cloned()).collect() };
    let measure = |tokens: &mut T, messages: &[ChatMessage]| -> Result<Measured, ContextError<T::Error>> {
        if tokens.cancelled() {
            return Err(ContextError::Cancelled);
        }
        tokens.prompt(messages, budget).map_err(ContextError::Count)
    };
    let newest = starts.len() - 1;
    let shortest = kept(starts[newest]);
    let shortest_ids = match measure(tokens, &shortest)? {
        Measured::Fits(ids) => ids,
        Measured::Exceeds { tokens, exact: true } => {
            return Err(ContextError::TooLong { prompt_tokens: tokens, budget })
        }
        Measured::Exceeds { tokens, exact: false } => {
            return Err(ContextError::FarTooLong { at_least: tokens, budget })
        }
    };
    let done = |messages: Vec<ChatMessage>, ids, from: usize| {
        let anchor = turns.get(from).map(message_key);
        Ok(Fitted { messages, dropped: from, ids, anchor })
    };
    if newest == 0 {
        return done(shortest, shortest_ids, 0);
    }
    // The last request's window, while it fits (newest match first: it is the likelier one).
    let anchored = anchor.and_then(|key| (0..newest).rev().find(|&t| message_key(&turns[starts[t]]) == key));
    if let Some(t) = anchored {
        let messages = kept(starts[t]);
        if let Measured::Fits(ids) = measure(tokens, &messages)? {
            return done(messages, ids, starts[t]);
        }
    }
    // All of it, when it fits.
    if anchored != Some(0) {
        let whole = kept(0);
        if let Measured::Fits(ids) = measure(tokens, &whole)? {
            return done(whole, ids, 0);
        }
    }
    // Otherwise turns go, from the oldest, down to the low-water mark, so that the turns that
    // follow fit without moving the cut. The template's tokens per message come from the
    // shortest prompt (rounded up: estimates err long); content past the prompt's length means
    // the template left some out, and then there is no overhead to learn.
    let mut content = 0;
    for m in &shortest {
        content += count(tokens, m, shortest_ids.len().saturating_sub(content))?;
        if content > shortest_ids.len() {
            break;
        }
    }
    let per_message = shortest_ids.len().saturating_sub(content).div_ceil(shortest.len());
    let target = low_water(budget);
    let mut estimate = shortest_ids.len();
    let mut oldest = newest;
    'turns: for t in (0..newest).rev() {
        let mut cost = 0;
        for m in &turns[starts[t]..starts[t + 1]] {
            let room = target.saturating_sub(estimate + cost + per_message);
            cost += count(tokens, m, room)? + per_message;
            if estimate + cost > target {
                break 'turns;
            }
        }
        estimate += cost;
        oldest = t;
    }
    // The estimate is checked exactly; when it was short, one more turn goes, a few times at most.
    for t in (oldest..newest).take(MAX_EXACT_TRIES) {
        let messages = kept(starts[t]);
        if let Measured::Fits(ids) = measure(tokens, &messages)? {
            return done(messages, ids, starts[t]);
        }
    }
    done(shortest, shortest_ids, starts[newest])
}

fn count<T: Tokens>(tokens: &mut T, message: &ChatMessage, limit: usize) -> Result<usize, ContextError<T::Error>> {
    if tokens.cancelled() {
        return Err(ContextError::Cancelled);
    }
    tokens.count(message, limit).map_err(ContextError::Count)
}

/// Where to cut `text` into a piece of at most `max` bytes for counting: before a whitespace
/// (the tokenizer's pre-tokenizer splits there too, so pieces count as the whole does), or at a
/// character boundary when there is none in the last quarter. The whole text when it is short.
pub fn piece_end(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    let boundary_at_or_before = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let cut = boundary_at_or_before(max);
    let from = boundary_at_or_before(cut - cut / 4);
    match text[from..cut].rfind(char::is_whitespace) {
        Some(at) if from + at > 0 => from + at,
        _ => cut,
    }
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
        /// Characters tokenized, in counts and prompts alike.
        read: usize,
        encoded: usize,
        cancel_after: Option<usize>,
        /// Extra tokens the exact prompt has beyond the estimate's arithmetic.
        surprise: usize,
    }

    impl Tokens for Chars {
        type Error = &'static str;
        fn count(&mut self, m: &ChatMessage, limit: usize) -> Result<usize, &'static str> {
            self.counted.push(m.content.clone());
            // As the real one: pieces of 4 characters, stopping once past the limit.
            let mut total = 0;
            for piece in m.content.as_bytes().chunks(4) {
                total += piece.len();
                self.read += piece.len();
                if total > limit {
                    break;
                }
            }
            Ok(total)
        }
        fn prompt(&mut self, m: &[ChatMessage], limit: usize) -> Result<Measured, &'static str> {
            self.encoded += 1;
            let n = m.iter().map(|m| m.content.len() + 1).sum::<usize>() + if m.len() > 2 { self.surprise } else { 0 };
            if n > 2 * limit + 8 {
                self.read += 2 * limit + 8;
                return Ok(Measured::Exceeds { tokens: 2 * limit + 8, exact: false });
            }
            self.read += n;
            Ok(if n <= limit { Measured::Fits(vec![0; n]) } else { Measured::Exceeds { tokens: n, exact: true } })
        }
        fn cancelled(&self) -> bool {
            self.cancel_after.is_some_and(|n| self.counted.len() >= n)
        }
    }

    #[test]
    fn a_conversation_that_fits_is_unchanged() {
        let c = conv(&[("system", "sys"), ("user", "hello"), ("assistant", "hi")]);
        let fitted = fit(&c, 100, None, &mut Chars::default()).unwrap();
        assert_eq!(
            fitted,
            Fitted { messages: c.clone(), dropped: 0, ids: vec![0; 13], anchor: Some(message_key(&c[1])) }
        );
        let two_turns = conv(&[("user", "a"), ("assistant", "b"), ("user", "c")]);
        let mut t = Chars::default();
        assert_eq!(fit(&two_turns, 100, None, &mut t).unwrap().messages, two_turns);
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
        // Everything: 2+5+5+3+3+2 = 20. Without the first turn: 2+3+3+2 = 10. Once turns must go
        // they go down to half the budget (the low-water mark): 10 fits 20 but not 20 / 2.
        let fitted = fit(&c, 20, None, &mut Chars::default()).unwrap();
        assert_eq!((fitted.dropped, fitted.ids.len()), (0, 20), "all of it fits: nothing goes");
        let fitted = fit(&c, 19, None, &mut Chars::default()).unwrap();
        assert_eq!(fitted.messages, conv(&[("system", "S"), ("user", "e")]), "10 is past 19 / 2");
        assert_eq!((fitted.dropped, fitted.ids.len()), (4, 4));
        // With more room per turn, the cut keeps what fits half the budget.
        let c = conv(&[("system", "S"), ("user", "aaaa"), ("assistant", "bbbb"), ("user", "c"), ("user", "e")]);
        let fitted = fit(&c, 14, None, &mut Chars::default()).unwrap();
        assert_eq!(fitted.messages, conv(&[("system", "S"), ("user", "c"), ("user", "e")]));
        assert_eq!((fitted.dropped, fitted.ids.len()), (2, 6));
        let fitted = fit(&c, 4, None, &mut Chars::default()).unwrap();
        assert_eq!(fitted.messages, conv(&[("system", "S"), ("user", "e")]));
    }

    #[test]
    fn the_window_keeps_its_start_while_it_fits_then_cuts_a_block() {
        // A conversation growing a turn at a time, budget 40: each turn costs 10 (4+1, 4+1).
        let mut c = vec![ChatMessage::new("system", "S")];
        let mut anchor = None;
        let mut starts = Vec::new();
        for i in 0..12 {
            c.push(ChatMessage::new("user", format!("q{i:03}")));
            let fitted = fit(&c, 40, anchor, &mut Chars::default()).unwrap();
            assert!(fitted.ids.len() <= 40, "turn {i}: {}", fitted.ids.len());
            starts.push(fitted.dropped / 2);
            anchor = fitted.anchor;
            c.push(ChatMessage::new("assistant", format!("a{i:03}")));
        }
        // All of it fits up to turn 3 (2 + 3*10 + 5 = 37; turn 4 would need 47): then the start
        // jumps to half the budget and stays put until the window is full again.
        assert_eq!(starts, [0, 0, 0, 0, 3, 3, 3, 6, 6, 6, 9, 9]);
        // Without the anchor, the next request would start elsewhere: the anchor is what holds it.
        let fresh = fit(&c[..c.len() - 1], 40, None, &mut Chars::default()).unwrap();
        assert_eq!(fresh.dropped / 2, 10, "cut anew to the low-water mark");
    }

    #[test]
    fn a_lost_or_outgrown_anchor_cuts_anew() {
        let c = conv(&[("user", "aaaa"), ("assistant", "bbbb"), ("user", "cc"), ("assistant", "dd"), ("user", "e")]);
        let gone = Some(message_key(&ChatMessage::new("user", "not here")));
        // All of it is 18 tokens, past 16: cut down to 16 / 2 = 8, which the newest two turns make.
        let fitted = fit(&c, 16, gone, &mut Chars::default()).unwrap();
        assert_eq!(fitted.messages, conv(&[("user", "cc"), ("assistant", "dd"), ("user", "e")]));
        // An anchor at the oldest turn, which no longer fits: cut to the low-water mark too.
        let oldest = Some(message_key(&c[0]));
        let fitted = fit(&c, 16, oldest, &mut Chars::default()).unwrap();
        assert_eq!(fitted.dropped, 2);
        assert_eq!(fitted.anchor, Some(message_key(&c[2])));
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
        let fitted = fit(&c, 100, None, &mut t).unwrap();
        assert!(fitted.ids.len() <= 50 && fitted.ids.len() > 20, "cut to half the budget: {}", fitted.ids.len());
        assert!(t.counted.len() < 20, "counted {} messages", t.counted.len());
        assert!(!t.counted.iter().any(|c| c == "question 0"));
        assert!(t.encoded <= 3, "{} exact prompts", t.encoded);
    }

    #[test]
    fn a_huge_message_is_read_only_until_it_is_clearly_too_long() {
        let huge = "x".repeat(1_000_000);
        // As the last turn: the shortest prompt is measured only so far.
        let mut t = Chars::default();
        let err = fit(&conv(&[("user", "old"), ("user", &huge)]), 100, None, &mut t).unwrap_err();
        assert_eq!(err, ContextError::FarTooLong { at_least: 208, budget: 100 });
        assert!(err.to_string().contains("more than 208 tokens but at most 100 fit"));
        assert!(t.read < 1_000, "read {} characters", t.read);
        // As an older turn: counted only until its turn cannot fit.
        let mut t = Chars::default();
        let fitted = fit(&conv(&[("user", &huge), ("assistant", "a"), ("user", "new")]), 100, None, &mut t).unwrap();
        assert_eq!(fitted.messages, conv(&[("user", "new")]));
        assert!(t.read < 1_000, "read {} characters", t.read);
    }

    #[test]
    fn an_estimate_that_was_short_drops_one_more_turn() {
        let c = conv(&[("user", "aaaa"), ("assistant", "bbbb"), ("user", "cc"), ("assistant", "dd"), ("user", "e")]);
        // Shortest prompt: 2 tokens, 1 of them the template's. Both older turns are estimated at
        // 2 + (3+3) + (5+5) = 18 <= 18, but the exact prompt has 5 tokens more (23): the oldest
        // turn goes after all (3+3+2 = 8, +5 = 13 fits).
        let mut t = Chars { surprise: 5, ..Default::default() };
        let fitted = fit(&c, 18, None, &mut t).unwrap();
        assert_eq!(fitted.messages, conv(&[("user", "cc"), ("assistant", "dd"), ("user", "e")]));
        assert_eq!(fitted.ids.len(), 13);
    }

    #[test]
    fn a_last_turn_too_long_on_its_own_is_an_error_with_the_sizes() {
        let c = conv(&[("user", "old"), ("user", "a very long question")]);
        let mut t = Chars::default();
        let err = fit(&c, 10, None, &mut t).unwrap_err();
        assert_eq!(err, ContextError::TooLong { prompt_tokens: 21, budget: 10 });
        assert!(err.to_string().contains("needs 21 tokens but at most 10 fit"));
        assert!(t.counted.is_empty(), "nothing else is read once the shortest prompt is too long");
    }

    #[test]
    fn cancellation_stops_the_walk() {
        let mut c = Vec::new();
        for i in 0..100 {
            c.push(ChatMessage::new("user", format!("q{i}")));
        }
        let mut t = Chars { cancel_after: Some(3), ..Default::default() };
        assert_eq!(fit(&c, 100, None, &mut t).unwrap_err(), ContextError::Cancelled);
        assert_eq!(t.counted.len(), 3);
    }

    #[test]
    fn counting_errors_pass_through() {
        struct Broken;
        impl Tokens for Broken {
            type Error = &'static str;
            fn count(&mut self, _: &ChatMessage, _: usize) -> Result<usize, &'static str> {
                Err("template broke")
            }
            fn prompt(&mut self, _: &[ChatMessage], _: usize) -> Result<Measured, &'static str> {
                Err("template broke")
            }
            fn cancelled(&self) -> bool {
                false
            }
        }
        assert_eq!(
            fit(&conv(&[("user", "x")]), 5, None, &mut Broken).unwrap_err(),
            ContextError::Count("template broke")
        );
    }

    #[test]
    fn pieces_end_before_whitespace_or_at_a_character_boundary() {
        assert_eq!(piece_end("short", 16), 5);
        assert_eq!(piece_end("aaaa bbbb cccc", 12), 9, "before the space, which starts the next piece");
        assert_eq!(piece_end("aaaaaaaaaaaa", 8), 8);
        // é is two bytes: never cut inside it, nor look back from inside it.
        assert_eq!(piece_end("ééééé", 5), 4);
        assert_eq!(piece_end("éééééééé", 13), 12);
        assert_eq!(piece_end(&"é".repeat(10_000), 16 * 1024 + 1), 16 * 1024);
    }
}
