//! Stop strings over streamed text: text that could still become a stop string is held back, and
//! nothing from the stop string on is ever released.

#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What one chunk of text released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    pub text: String,
    /// A stop string was found; generation should end.
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: impl IntoIterator<Item = String>) -> Self {
        StopMatcher { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), held: String::new() }
    }

    pub fn push(&mut self, chunk: &str) -> Released {
        self.held.push_str(chunk);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let text = self.held[..at].to_string();
            self.held.clear();
            return Released { text, stopped: true };
        }
        let keep = self.stops.iter().map(|s| partial_suffix(&self.held, s)).max().unwrap_or(0);
        let text = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        Released { text, stopped: false }
    }

    /// Generation ended for another reason: whatever was held is ordinary text.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `tag` (on a char boundary):
/// the part of a streamed text that must be held back in case the tag completes.
pub(crate) fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_text_and_stops_before_the_stop_string() {
        let mut m = StopMatcher::new(["\nUser:".to_string()]);
        assert_eq!(m.push("Hello"), Released { text: "Hello".into(), stopped: false });
        assert_eq!(m.push(" there\nUs"), Released { text: " there".into(), stopped: false });
        assert_eq!(m.push("er: hi"), Released { text: "".into(), stopped: true });
    }

    #[test]
    fn a_false_start_is_released_and_flush_returns_the_rest() {
        let mut m = StopMatcher::new(["STOP".to_string(), "".to_string()]);
        assert_eq!(m.push("ST").text, "");
        assert_eq!(m.push("ART ST").text, "START ");
        assert_eq!(m.flush(), "ST");
        let mut none = StopMatcher::new(Vec::new());
        assert_eq!(none.push("anything"), Released { text: "anything".into(), stopped: false });
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let mut m = StopMatcher::new(["b".to_string(), "a".to_string()]);
        assert_eq!(m.push("xxaxb"), Released { text: "xx".into(), stopped: true });
    }
}
