//! Splitting DeepSeek-R1 output into reasoning and answer, as text streams in.
//!
//! The chat template opens `<think>\n` for the assistant, so generation usually starts inside the
//! reasoning; the model closes it with `</think>` and then writes the answer. The model may also
//! skip reasoning: when the prompt did not open `<think>`, output that starts with `<think>` is
//! reasoning and anything else is answer. A tag split across chunks is held back until it is
//! complete, so no piece of a tag ever reaches the caller.

use super::stop::partial_suffix;

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// Which part of the reply a piece of text belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Reasoning,
    Answer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting to see whether the output opens `<think>` (leading whitespace is held).
    Start,
    Reasoning,
    /// After `</think>`: whitespace before the first answer character is dropped.
    AnswerStart,
    Answer,
}

#[derive(Clone, Debug)]
pub struct ReasoningSplitter {
    state: State,
    /// Text received but not yet classified (a possible partial tag, or leading whitespace).
    pending: String,
    reasoning: String,
    answer: String,
    closed: bool,
}

/// The final split of a whole reply.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Split {
    pub reasoning: String,
    pub answer: String,
}

impl ReasoningSplitter {
    /// `opened_by_prompt`: the prompt already ends with `<think>` (the DeepSeek-R1 template).
    pub fn new(opened_by_prompt: bool) -> Self {
        ReasoningSplitter {
            state: if opened_by_prompt { State::Reasoning } else { State::Start },
            pending: String::new(),
            reasoning: String::new(),
            answer: String::new(),
            closed: false,
        }
    }

    /// Feed the next chunk of generated text; returns the classified pieces it releases.
    pub fn push(&mut self, chunk: &str) -> Vec<(Part, String)> {
        self.pending.push_str(chunk);
        let mut out = Vec::new();
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.pending.trim_start();
                    if trimmed.is_empty() {
                        break;
                    }
                    if let Some(rest) = trimmed.strip_prefix(OPEN) {
                        self.pending = rest.trim_start_matches('\n').to_string();
                        self.state = State::Reasoning;
                    } else if OPEN.starts_with(trimmed) {
                        break; // maybe the start of "<think>": wait for more
                    } else {
                        self.state = State::AnswerStart;
                    }
                }
                State::Reasoning => match self.pending.find(CLOSE) {
                    Some(at) => {
                        let rest = self.pending.split_off(at + CLOSE.len());
                        self.pending.truncate(at);
                        self.emit(Part::Reasoning, &mut out);
                        self.pending = rest;
                        self.closed = true;
                        self.state = State::AnswerStart;
                    }
                    None => {
                        let keep = partial_suffix(&self.pending, CLOSE);
                        let rest = self.pending.split_off(self.pending.len() - keep);
                        self.emit(Part::Reasoning, &mut out);
                        self.pending = rest;
                        break;
                    }
                },
                State::AnswerStart => {
                    let trimmed = self.pending.trim_start();
                    if trimmed.is_empty() {
                        self.pending.clear();
                        break;
                    }
                    self.pending = trimmed.to_string();
                    self.state = State::Answer;
                }
                State::Answer => {
                    self.emit(Part::Answer, &mut out);
                    break;
                }
            }
        }
        out
    }

    /// End of generation: release held text and return the whole split.
    ///
    /// `finished` is true when the model ended on its own (end-of-sequence or a stop string).
    /// A reasoning block that never closed then was the model answering without `</think>`, and
    /// becomes the answer; when generation was cut off (length, cancel) it stays reasoning.
    pub fn finish(mut self, finished: bool) -> Split {
        let mut out = Vec::new();
        match self.state {
            State::Start | State::AnswerStart => {
                let text = self.pending.trim_start().to_string();
                self.pending = text;
                self.emit(Part::Answer, &mut out);
            }
            State::Reasoning => self.emit(Part::Reasoning, &mut out),
            State::Answer => self.emit(Part::Answer, &mut out),
        }
        if finished && !self.closed && self.answer.is_empty() {
            return Split { reasoning: String::new(), answer: self.reasoning.trim().to_string() };
        }
        Split { reasoning: self.reasoning.trim_end().to_string(), answer: self.answer }
    }

    fn emit(&mut self, part: Part, out: &mut Vec<(Part, String)>) {
        if self.pending.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.pending);
        match part {
            Part::Reasoning => self.reasoning.push_str(&text),
            Part::Answer => self.answer.push_str(&text),
        }
        match out.last_mut() {
            Some((p, t)) if *p == part => t.push_str(&text),
            _ => out.push((part, text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(opened: bool, chunks: &[&str], finished: bool) -> (Vec<(Part, String)>, Split) {
        let mut s = ReasoningSplitter::new(opened);
        let mut pieces: Vec<(Part, String)> = Vec::new();
        for c in chunks {
            for (p, t) in s.push(c) {
                match pieces.last_mut() {
                    Some((lp, lt)) if *lp == p => lt.push_str(&t),
                    _ => pieces.push((p, t)),
                }
            }
        }
        (pieces, s.finish(finished))
    }

    #[test]
    fn reasoning_then_answer_after_a_template_opened_think() {
        let (pieces, split) = run(true, &["The user ", "greets me.\n", "</think>", "\n\nHello!"], true);
        assert_eq!(pieces, vec![(Part::Reasoning, "The user greets me.\n".into()), (Part::Answer, "Hello!".into()),]);
        assert_eq!(split, Split { reasoning: "The user greets me.".into(), answer: "Hello!".into() });
    }

    #[test]
    fn close_tag_split_across_chunks_never_leaks() {
        let (pieces, split) = run(true, &["thinking</", "thi", "nk>", " answer"], true);
        assert_eq!(pieces, vec![(Part::Reasoning, "thinking".into()), (Part::Answer, "answer".into())]);
        assert_eq!(split.answer, "answer");
        // A "</" that turns out not to be the tag is released as reasoning.
        let (pieces, _) = run(true, &["a </b", "> c"], false);
        assert_eq!(pieces, vec![(Part::Reasoning, "a </b> c".into())]);
    }

    #[test]
    fn without_an_opened_think_output_is_answer_unless_it_opens_one() {
        let (pieces, split) = run(false, &["Just an answer."], true);
        assert_eq!(pieces, vec![(Part::Answer, "Just an answer.".into())]);
        assert_eq!(split.reasoning, "");
        let (pieces, split) = run(false, &["\n<thi", "nk>\nhmm", "</think>ok"], true);
        assert_eq!(pieces, vec![(Part::Reasoning, "hmm".into()), (Part::Answer, "ok".into())]);
        assert_eq!(split, Split { reasoning: "hmm".into(), answer: "ok".into() });
    }

    #[test]
    fn unterminated_think_becomes_the_answer_only_when_the_model_finished() {
        let (pieces, split) = run(true, &["\nHere is a picture of a clear sky?"], true);
        assert_eq!(pieces, vec![(Part::Reasoning, "\nHere is a picture of a clear sky?".into())]);
        assert_eq!(split, Split { reasoning: "".into(), answer: "Here is a picture of a clear sky?".into() });
        // Cut off by the token limit while thinking: it stays reasoning, the answer is empty.
        let (_, split) = run(true, &["still thinking"], false);
        assert_eq!(split, Split { reasoning: "still thinking".into(), answer: "".into() });
    }

    #[test]
    fn empty_reasoning_and_multibyte_text() {
        let (pieces, split) = run(true, &["</think>", "\n\n", "你好 🦊"], true);
        assert_eq!(pieces, vec![(Part::Answer, "你好 🦊".into())]);
        assert_eq!(split.reasoning, "");
        assert_eq!(partial_suffix("ab<", "</think>"), 1);
        assert_eq!(partial_suffix("é", "</think>"), 0);
    }
}
