//! Pulling a picture request out of the model's answer. The system prompt asks the model to put
//! an image prompt in a block, either `<image_prompt>…</image_prompt>` or a fenced block tagged
//! `image_prompt`. A 1.5B model follows formats loosely, so this accepts what it actually writes:
//! unclosed blocks (to the end of the answer), several blocks (the first non-empty one wins, all
//! are removed), empty blocks, any letter case in the tag. Only the answer is ever searched: a
//! block the model sketched while reasoning is not a request.

/// Longest image prompt kept (the same limit as `POST /image`).
pub const MAX_IMAGE_PROMPT_CHARS: usize = 1000;

const TAG_OPEN: &str = "<image_prompt>";
const TAG_CLOSE: &str = "</image_prompt>";
const FENCE_OPEN: &str = "```image_prompt";
const FENCE: &str = "```";

use crate::inference::llm::stop::partial_suffix;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    /// The answer with every block removed, as the user should see it.
    pub reply: String,
    /// The first non-empty block, on one line, at most [`MAX_IMAGE_PROMPT_CHARS`] characters.
    pub prompt: Option<String>,
}

pub fn extract(answer: &str) -> Extracted {
    // ASCII lower-casing keeps byte offsets, so positions found in `lower` cut `answer`.
    let lower = answer.to_ascii_lowercase();
    let mut reply = String::with_capacity(answer.len());
    let mut prompt = None;
    let mut rest = 0;
    while let Some(block) = next_block(&lower, rest) {
        reply.push_str(&answer[rest..block.start]);
        if prompt.is_none() {
            prompt = clean_prompt(&answer[block.content.clone()]);
        }
        rest = block.end;
    }
    reply.push_str(&answer[rest..]);
    Extracted { reply: tidy(&reply), prompt }
}

struct Block {
    start: usize,
    content: std::ops::Range<usize>,
    end: usize,
}

/// The earliest block at or after `from`, in either form.
fn next_block(lower: &str, from: usize) -> Option<Block> {
    let tag = lower[from..].find(TAG_OPEN).map(|i| from + i);
    let fence = lower[from..].find(FENCE_OPEN).map(|i| from + i);
    match (tag, fence) {
        (Some(t), Some(f)) if f < t => Some(fenced(lower, f)),
        (Some(t), _) => Some(tagged(lower, t)),
        (None, Some(f)) => Some(fenced(lower, f)),
        (None, None) => None,
    }
}

fn tagged(lower: &str, start: usize) -> Block {
    let from = start + TAG_OPEN.len();
    match lower[from..].find(TAG_CLOSE) {
        Some(i) => Block { start, content: from..from + i, end: from + i + TAG_CLOSE.len() },
        None => Block { start, content: from..lower.len(), end: lower.len() },
    }
}

fn fenced(lower: &str, start: usize) -> Block {
    // The prompt starts on the line after the opening fence.
    let after_tag = start + FENCE_OPEN.len();
    let from = lower[after_tag..].find('\n').map_or(lower.len(), |i| after_tag + i + 1);
    match lower[from..].find(FENCE) {
        Some(i) => Block { start, content: from..from + i, end: from + i + FENCE.len() },
        None => Block { start, content: from..lower.len(), end: lower.len() },
    }
}

/// One line, no wrapping quotes, cut at a word boundary when over the limit; `None` when empty.
fn clean_prompt(raw: &str) -> Option<String> {
    let joined = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let unquoted = joined.trim_matches(|c| c == '"' || c == '\'' || c == '`').trim();
    if unquoted.is_empty() {
        return None;
    }
    Some(super::sanitize::bound(unquoted))
}

/// Holds image-prompt blocks back from a streamed answer, so the user never sees them appear and
/// vanish. Text that might start a block waits until it is known not to.
#[derive(Debug, Default)]
pub struct StreamFilter {
    pending: String,
    /// The closing marker while inside a block.
    inside: Option<&'static str>,
}

impl StreamFilter {
    /// Add streamed text; returns what can be shown now.
    pub fn push(&mut self, text: &str) -> String {
        self.pending.push_str(text);
        let mut shown = String::new();
        loop {
            let lower = self.pending.to_ascii_lowercase();
            match self.inside {
                Some(close) => match lower.find(close) {
                    Some(i) => {
                        self.pending.drain(..i + close.len());
                        self.inside = None;
                    }
                    None => {
                        // Drop the block's text, keeping what may be the start of its end.
                        let keep = partial_suffix(&lower, close);
                        self.pending.drain(..self.pending.len() - keep);
                        return shown;
                    }
                },
                None => {
                    let opens = [(TAG_OPEN, TAG_CLOSE), (FENCE_OPEN, FENCE)];
                    let first = opens.iter().filter_map(|&(open, close)| Some((lower.find(open)?, open, close))).min();
                    match first {
                        Some((i, open, close)) => {
                            shown.push_str(&self.pending[..i]);
                            self.pending.drain(..i + open.len());
                            self.inside = Some(close);
                        }
                        None => {
                            let hold = opens.iter().map(|&(open, _)| partial_suffix(&lower, open)).max().unwrap_or(0);
                            let cut = self.pending.len() - hold;
                            shown.extend(self.pending.drain(..cut));
                            return shown;
                        }
                    }
                }
            }
        }
    }

    /// The stream ended: release held text unless it is inside a block.
    pub fn finish(&mut self) -> String {
        match self.inside {
            Some(_) => String::new(),
            None => std::mem::take(&mut self.pending),
        }
    }
}

/// Trim, and close the gaps removed blocks leave: never more than one blank line in a row.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.trim().lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt_of(answer: &str) -> Option<String> {
        extract(answer).prompt
    }

    #[test]
    fn an_answer_without_a_block_is_left_alone() {
        let e = extract("  Paris is the capital of France.\n");
        assert_eq!(e, Extracted { reply: "Paris is the capital of France.".into(), prompt: None });
    }

    #[test]
    fn a_tagged_block_becomes_the_prompt_and_leaves_the_reply() {
        let e = extract("Here is your fox.\n\n<image_prompt>a red fox in snow, golden hour</image_prompt>\n\nEnjoy!");
        assert_eq!(e.prompt.as_deref(), Some("a red fox in snow, golden hour"));
        assert_eq!(e.reply, "Here is your fox.\n\nEnjoy!");
    }

    #[test]
    fn a_fenced_block_becomes_the_prompt() {
        let e = extract("Sure!\n```image_prompt\na lighthouse at dusk,\n  oil painting\n```\n");
        assert_eq!(e.prompt.as_deref(), Some("a lighthouse at dusk, oil painting"));
        assert_eq!(e.reply, "Sure!");
    }

    #[test]
    fn unclosed_blocks_run_to_the_end() {
        let e = extract("Drawing it now. <image_prompt> a castle on a hill");
        assert_eq!(e.prompt.as_deref(), Some("a castle on a hill"));
        assert_eq!(e.reply, "Drawing it now.");
        let e = extract("Okay:\n```image_prompt\nstarry night over a lake\n");
        assert_eq!(e.prompt.as_deref(), Some("starry night over a lake"));
        assert_eq!(e.reply, "Okay:");
    }

    #[test]
    fn of_two_blocks_the_first_wins_and_both_go() {
        let e = extract("A <image_prompt>first</image_prompt> B\n```image_prompt\nsecond\n``` C");
        assert_eq!(e.prompt.as_deref(), Some("first"));
        assert_eq!(e.reply, "A  B\n C");
        // The fenced one first this time.
        assert_eq!(prompt_of("```image_prompt\none\n``` <image_prompt>two</image_prompt>").as_deref(), Some("one"));
    }

    #[test]
    fn empty_blocks_are_removed_without_a_prompt() {
        assert_eq!(
            extract("Nothing <image_prompt>  \n </image_prompt>here"),
            Extracted { reply: "Nothing here".into(), prompt: None }
        );
        // An empty block does not hide a real one after it.
        assert_eq!(
            prompt_of("<image_prompt></image_prompt><image_prompt>a cat</image_prompt>").as_deref(),
            Some("a cat")
        );
        assert_eq!(prompt_of("<image_prompt>\"\"</image_prompt>"), None);
    }

    #[test]
    fn tags_in_any_case_and_quotes_around_the_prompt() {
        assert_eq!(prompt_of("<IMAGE_PROMPT>\"A Blue Whale\"</Image_Prompt>").as_deref(), Some("A Blue Whale"));
    }

    #[test]
    fn over_long_prompts_are_cut_on_a_word() {
        let long = "word ".repeat(300); // 1500 characters
        let p = prompt_of(&format!("<image_prompt>{long}</image_prompt>")).unwrap();
        assert!(p.chars().count() <= MAX_IMAGE_PROMPT_CHARS, "{}", p.len());
        assert!(p.ends_with("word") && p.len() > 900, "{p:?}");
        // One endless word is cut hard, on a character boundary.
        let p = prompt_of(&format!("<image_prompt>{}</image_prompt>", "é".repeat(1200))).unwrap();
        assert_eq!(p.chars().count(), MAX_IMAGE_PROMPT_CHARS);
    }

    #[test]
    fn a_lone_closing_tag_or_plain_fence_is_not_a_block() {
        let e = extract("Use ```rust\nfn main() {}\n``` and </image_prompt> stays.");
        assert_eq!(e.prompt, None);
        assert_eq!(e.reply, "Use ```rust\nfn main() {}\n``` and </image_prompt> stays.");
    }

    #[test]
    fn streamed_blocks_never_show() {
        let mut f = StreamFilter::default();
        let pieces = [
            "Here you go",
            ". <ima",
            "ge_prompt>a red",
            " fox</image_",
            "prompt> Enjoy",
            " ``",
            "`image_prompt\nsea\n``",
            "` end",
        ];
        let shown: String = pieces.iter().map(|p| f.push(p)).collect::<String>() + &f.finish();
        assert_eq!(shown, "Here you go.  Enjoy  end");
        // Held text that turns out not to be a tag is released.
        let mut f = StreamFilter::default();
        assert_eq!(f.push("a <im"), "a ");
        assert_eq!(f.push("g src>"), "<img src>");
        assert_eq!(f.push("x <"), "x ");
        assert_eq!(f.finish(), "<");
        // An unclosed block hides everything after it.
        let mut f = StreamFilter::default();
        assert_eq!(f.push("ok <IMAGE_PROMPT>never shown"), "ok ");
        assert_eq!(f.push(" still hidden"), "");
        assert_eq!(f.finish(), "");
    }
}
