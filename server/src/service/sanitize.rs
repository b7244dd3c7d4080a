//! The one filter every image prompt passes before a job is queued, typed by a person or taken
//! from a chat reply: control and invisible formatting characters and markup removed, spaces
//! folded, the length bounded, and an optional block-list (`IMAGE_PROMPT_BLOCKLIST`) applied to
//! what is left. Pure: the policy is read once at start-up.

use regex::{Regex, RegexBuilder};
use std::{path::Path, sync::LazyLock};
use unicode_normalization::UnicodeNormalization;

use super::image_prompt::MAX_IMAGE_PROMPT_CHARS as MAX_PROMPT_CHARS;

/// What an image prompt must get through, and the negative prompt used when none is given.
#[derive(Debug, Default)]
pub struct PromptPolicy {
    rules: Vec<Rule>,
    /// `IMAGE_NEGATIVE_PROMPT`: for requests that give no negative prompt.
    pub default_negative: String,
}

/// One block-list entry, named as the file writes it so a refusal can say which one.
#[derive(Debug)]
struct Rule {
    name: String,
    pattern: Regex,
}

/// A prompt the block-list refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The rule, as `line N: entry`.
    pub rule: String,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused by the image prompt block-list (IMAGE_PROMPT_BLOCKLIST {})", self.rule)
    }
}

impl PromptPolicy {
    /// The policy from the block-list file (none: no block-list) and the default negative prompt.
    /// A file that cannot be read or a pattern that does not compile is an error naming the line.
    pub fn load(blocklist: Option<&Path>, default_negative: &str) -> Result<PromptPolicy, String> {
        let rules = match blocklist {
            None => Vec::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("IMAGE_PROMPT_BLOCKLIST: cannot read {}: {e}", path.display()))?;
                parse_rules(&text).map_err(|e| format!("IMAGE_PROMPT_BLOCKLIST {}: {e}", path.display()))?
            }
        };
        Ok(PromptPolicy { rules, default_negative: clean(default_negative) })
    }

    /// Block-list entries in effect.
    pub fn rules(&self) -> usize {
        self.rules.len()
    }

    /// The prompt as it will be drawn, or the rule that refuses it. The result may be empty
    /// (nothing but markup or control characters): the caller decides what that means.
    pub fn check(&self, prompt: &str) -> Result<String, Blocked> {
        let cleaned = clean(prompt);
        // Matched on a folded copy, so full-width letters, ligatures and letter case do not slip by.
        let folded: String = cleaned.nfkc().collect::<String>().to_lowercase();
        match self.rules.iter().find(|rule| rule.pattern.is_match(&folded)) {
            Some(rule) => Err(Blocked { rule: rule.name.clone() }),
            None => Ok(cleaned),
        }
    }

    /// The negative prompt to draw with: the request's own, cleaned, or the default.
    pub fn negative(&self, given: Option<&str>) -> String {
        let given = given.map(clean).unwrap_or_default();
        if given.is_empty() {
            self.default_negative.clone()
        } else {
            given
        }
    }
}

/// One rule a line: a word or phrase (matched as whole words, in any case), or `re:` and a
/// regular expression (matched anywhere, in any case). Blank lines and `#` comments are skipped.
fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let pattern = match entry.strip_prefix("re:") {
            Some(re) => re.trim().to_string(),
            None => {
                let words: Vec<String> =
                    entry.nfkc().collect::<String>().to_lowercase().split_whitespace().map(regex::escape).collect();
                format!(r"(?:^|\W){}(?:$|\W)", words.join(r"\s+"))
            }
        };
        let compiled = RegexBuilder::new(&pattern).case_insensitive(true).size_limit(1 << 20).build().map_err(|e| {
            // The regex crate draws the pattern with a caret over several lines; keep its verdict.
            let text = e.to_string();
            let why = text.lines().last().unwrap_or_default().trim_start_matches("error: ").to_string();
            format!("line {}: {entry:?} is not a usable pattern: {why}", i + 1)
        })?;
        rules.push(Rule { name: format!("line {}: {entry}", i + 1), pattern: compiled });
    }
    Ok(rules)
}

static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<!--.*?-->|</?([A-Za-z][A-Za-z0-9]*)[^<>]{0,256}>").unwrap());
static MD_LINK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"!?\[([^\]]{0,1000})\]\([^)]{0,2000}\)").unwrap());
static MD_LINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?m)^[ \t]{0,3}(?:#{1,6}|>|[-*+])[ \t]+").unwrap());
static MD_INLINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"`+|\*\*|__|~~").unwrap());
/// Tags inside a line of text: removed without a space, so `<i>go</i>re` reads `gore`.
const INLINE_TAGS: &[&str] =
    &["a", "b", "code", "em", "font", "i", "mark", "s", "small", "span", "strong", "sub", "sup", "u"];

/// The prompt without control or invisible formatting characters, HTML tags and comments,
/// Markdown links, headings, quotes, list marks, code ticks and emphasis; spaces folded; at most
/// [`MAX_PROMPT_CHARS`] characters, cut at a space where one is near.
pub fn clean(prompt: &str) -> String {
    let text: String = prompt
        .chars()
        .map(|c| if matches!(c, '\n' | '\r' | '\t') { '\n' } else { c })
        .filter(|&c| c == '\n' || !(c.is_control() || is_invisible(c)))
        .collect();
    let text = TAG.replace_all(&text, |tag: &regex::Captures| {
        let name = tag.get(1).map(|n| n.as_str().to_ascii_lowercase());
        if name.is_some_and(|n| INLINE_TAGS.contains(&n.as_str())) {
            ""
        } else {
            " "
        }
    });
    let text = MD_LINK.replace_all(&text, "$1");
    let text = MD_LINE.replace_all(&text, " ");
    let text = MD_INLINE.replace_all(&text, "");
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    bound(&folded)
}

/// Zero-width and direction-changing characters: invisible, and used to smuggle words past
/// filters or to reorder what a reader sees.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// At most [`MAX_PROMPT_CHARS`] characters of a prompt whose spaces are folded, ending on a whole
/// word unless that would throw away a lot.
pub fn bound(text: &str) -> String {
    let cut = text.char_indices().nth(MAX_PROMPT_CHARS).map_or(text.len(), |(i, _)| i);
    let head = &text[..cut];
    if cut == text.len() {
        return head.to_string();
    }
    let end = match head.rfind(' ') {
        Some(space) if space > cut.saturating_sub(100) => space,
        _ => cut,
    };
    head[..end].trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(blocklist: &str) -> PromptPolicy {
        PromptPolicy { rules: parse_rules(blocklist).unwrap(), default_negative: String::new() }
    }

    #[test]
    fn control_characters_and_invisible_ones_go() {
        assert_eq!(clean("a\u{0}red\u{7}\u{1b}[31m fox"), "ared[31m fox");
        assert_eq!(clean("a red\n\n\tfox\r\n"), "a red fox");
        assert_eq!(clean("g\u{200B}o\u{200D}r\u{FEFF}e \u{202E}xof"), "gore xof");
    }

    #[test]
    fn markup_goes_and_its_text_stays() {
        assert_eq!(clean("<b>a red</b> fox<script>alert(1)</script>"), "a red fox alert(1)");
        assert_eq!(clean("a <!-- hidden --> fox <img src=x onerror=alert(1)>"), "a fox");
        assert_eq!(
            clean("# A fox\n> in **deep** `snow`, see [this](http://x.example/y)"),
            "A fox in deep snow, see this"
        );
        assert_eq!(clean("- a fox\n* a hare\n![owl](owl.png)"), "a fox a hare owl");
        // Not markup: comparison signs and weights stay.
        assert_eq!(clean("3 < 4 > 2, (red:1.2) fox"), "3 < 4 > 2, (red:1.2) fox");
    }

    #[test]
    fn length_is_bounded_at_a_word() {
        let long = "fox ".repeat(400);
        let cut = clean(&long);
        assert!(cut.chars().count() <= MAX_PROMPT_CHARS && cut.ends_with("fox"), "{}", cut.len());
        let one_word = "x".repeat(2000);
        assert_eq!(clean(&one_word).chars().count(), MAX_PROMPT_CHARS);
    }

    #[test]
    fn words_match_whole_and_in_any_case_and_form() {
        let p = policy("# people we do not draw\ngore\nblood bath\n");
        assert_eq!(p.rules(), 2);
        assert_eq!(p.check("a GORE scene"), Err(Blocked { rule: "line 2: gore".into() }));
        assert_eq!(p.check("ａ ｇｏｒｅ scene").unwrap_err().rule, "line 2: gore", "full-width letters");
        assert_eq!(p.check("g\u{200B}ore").unwrap_err().rule, "line 2: gore", "zero-width space");
        assert_eq!(p.check("<i>go</i>re").unwrap_err().rule, "line 2: gore", "split by markup");
        assert_eq!(p.check("a blood   bath").unwrap_err().rule, "line 3: blood bath");
        assert_eq!(p.check("gorgeous gored bloodbath"), Ok("gorgeous gored bloodbath".into()));
        assert_eq!(p.check("a red fox"), Ok("a red fox".into()));
    }

    #[test]
    fn patterns_match_anywhere() {
        let p = policy("re: nud(e|ity)\nre:^\\d+$");
        assert_eq!(p.check("Nudity").unwrap_err().rule, "line 1: re: nud(e|ity)");
        assert_eq!(p.check("12345").unwrap_err().rule, "line 2: re:^\\d+$");
        assert!(p.check("a nude-coloured wall").is_err());
        assert!(p.check("12345 foxes").is_ok());
    }

    #[test]
    fn a_bad_pattern_names_its_line() {
        let err = parse_rules("fox\nre:(unclosed").unwrap_err();
        assert!(err.starts_with("line 2: \"re:(unclosed\" is not a usable pattern"), "{err}");
    }

    #[test]
    fn the_default_negative_prompt_fills_in() {
        let p = PromptPolicy::load(None, " blurry,\u{0} <b>lowres</b> ").unwrap();
        assert_eq!(p.negative(None), "blurry, lowres");
        assert_eq!(p.negative(Some("  ")), "blurry, lowres");
        assert_eq!(p.negative(Some("grainy")), "grainy");
        assert!(PromptPolicy::load(Some(Path::new("/no/such/list")), "")
            .unwrap_err()
            .contains("IMAGE_PROMPT_BLOCKLIST"));
    }
}
