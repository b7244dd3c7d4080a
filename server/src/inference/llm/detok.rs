//! Incremental detokenization: turn a growing list of token ids into text deltas, releasing only
//! complete UTF-8. A byte-level BPE token can end in the middle of a character (a CJK character or
//! an emoji is often two or three tokens); decoding then ends in U+FFFD and the text is held until
//! the character is complete.
//!
//! Only a short window of tokens is decoded per step: the text of `ids[prefix..read]` was already
//! released, and `ids[prefix..]` is decoded to see what the new tokens add.

/// Turns token ids into text (the tokenizer, skipping special tokens).
pub trait Decode {
    fn decode(&self, ids: &[u32]) -> String;
}

impl<F: Fn(&[u32]) -> String> Decode for F {
    fn decode(&self, ids: &[u32]) -> String {
        self(ids)
    }
}

#[derive(Clone, Debug, Default)]
pub struct IncrementalDetokenizer {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl IncrementalDetokenizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one token; returns the text it completes (often empty while a character is split).
    pub fn push(&mut self, id: u32, decoder: &impl Decode) -> String {
        self.ids.push(id);
        let before = decoder.decode(&self.ids[self.prefix..self.read]);
        let after = decoder.decode(&self.ids[self.prefix..]);
        if after.ends_with('\u{FFFD}') || after.len() <= before.len() || !after.is_char_boundary(before.len()) {
            return String::new();
        }
        self.prefix = self.read;
        self.read = self.ids.len();
        after[before.len()..].to_string()
    }

    /// End of generation: whatever is still held (an unfinished character decodes as U+FFFD).
    pub fn flush(&mut self, decoder: &impl Decode) -> String {
        let before = decoder.decode(&self.ids[self.prefix..self.read]);
        let after = decoder.decode(&self.ids[self.prefix..]);
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        after.get(before.len()..).unwrap_or_default().to_string()
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level vocabulary: each id is a byte string, decoding is lossy UTF-8 of the bytes.
    fn vocab(ids: &[u32]) -> String {
        let table: [&[u8]; 5] = [b"Hi", b" \xE4\xBD", b"\xA0", b"\xE5\xA5\xBD", b"!"]; // " 你" split, "好"
        String::from_utf8_lossy(&ids.iter().flat_map(|&i| table[i as usize].to_vec()).collect::<Vec<_>>()).into_owned()
    }

    #[test]
    fn a_character_split_across_tokens_is_released_whole() {
        let mut d = IncrementalDetokenizer::new();
        let out: Vec<String> = [0, 1, 2, 3, 4].iter().map(|&id| d.push(id, &vocab)).collect();
        assert_eq!(out, vec!["Hi", "", " 你", "好", "!"]);
        assert_eq!(d.flush(&vocab), "");
        assert_eq!(d.ids(), &[0, 1, 2, 3, 4]);
    }

    #[test]
    fn an_unfinished_character_at_the_end_is_flushed_as_replacement() {
        let mut d = IncrementalDetokenizer::new();
        assert_eq!(d.push(0, &vocab), "Hi");
        assert_eq!(d.push(1, &vocab), "");
        assert_eq!(d.flush(&vocab), " \u{FFFD}");
    }

    #[test]
    fn tokens_that_decode_to_nothing_release_nothing() {
        // A special token skipped by the decoder.
        let skip = |ids: &[u32]| ids.iter().filter(|&&i| i != 9).map(|&i| vocab(&[i])).collect::<String>();
        let mut d = IncrementalDetokenizer::new();
        assert_eq!(d.push(0, &skip), "Hi");
        assert_eq!(d.push(9, &skip), "");
        assert_eq!(d.push(4, &skip), "!");
    }
}
