//! Turning what someone typed into a full-text query both backends read alike, and the matched
//! snippets back into plain text with the hits marked. Pure: no database here.

/// Marks the database puts around each hit in a snippet (private-use characters, which never
/// occur in text people write, so user text cannot fake a hit or inject markup).
pub const HIT_START: char = '\u{E000}';
pub const HIT_END: char = '\u{E001}';

const MAX_TERMS: usize = 8;
const MAX_TERM_CHARS: usize = 64;

/// The words of a search, lower-cased; punctuation and operators are just separators.
pub fn terms(query: &str) -> Vec<String> {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(MAX_TERM_CHARS).collect::<String>().to_lowercase())
        .take(MAX_TERMS)
        .collect()
}

/// SQLite FTS5: every word must appear, each as a prefix (search as you type).
pub fn fts5(terms: &[String]) -> String {
    terms.iter().map(|t| format!("\"{t}\"*")).collect::<Vec<_>>().join(" AND ")
}

/// Postgres `to_tsquery`: the same meaning. Terms hold only letters and digits, so they need no
/// quoting.
pub fn tsquery(terms: &[String]) -> String {
    terms.iter().map(|t| format!("{t}:*")).collect::<Vec<_>>().join(" & ")
}

/// A snippet as runs of text, each a hit or not.
pub fn segments(marked: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let mut hit = false;
    for piece in marked.split_inclusive([HIT_START, HIT_END]) {
        let (text, mark) = match piece.chars().last() {
            Some(c @ (HIT_START | HIT_END)) => (&piece[..piece.len() - c.len_utf8()], Some(c)),
            _ => (piece, None),
        };
        if !text.is_empty() {
            match out.last_mut() {
                Some((last, was_hit)) if *was_hit == hit => last.push_str(text),
                _ => out.push((text.to_string(), hit)),
            }
        }
        if let Some(mark) = mark {
            hit = mark == HIT_START;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_keep_words_and_drop_operators() {
        let t = terms(r#"  Red "fox" OR -NEAR(x) café*  "#);
        assert_eq!(t, ["red", "fox", "or", "near", "x", "café"]);
        assert_eq!(fts5(&t[..2]), r#""red"* AND "fox"*"#);
        assert_eq!(tsquery(&t[..2]), "red:* & fox:*");
        assert!(terms(" ,.;'\"() ").is_empty());
        assert_eq!(terms(&"w ".repeat(20)).len(), 8);
    }

    #[test]
    fn snippets_split_into_hits_and_text() {
        let s = format!("…a {HIT_START}red{HIT_END} {HIT_START}fox{HIT_END} ran");
        assert_eq!(
            segments(&s),
            [
                ("…a ".into(), false),
                ("red".into(), true),
                (" ".into(), false),
                ("fox".into(), true),
                (" ran".into(), false)
            ]
        );
        assert_eq!(segments("plain"), [("plain".to_string(), false)]);
        assert!(segments("").is_empty());
    }
}
