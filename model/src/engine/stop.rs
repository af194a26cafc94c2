//! Incremental text for a growing token list: each step decodes only the last few tokens
//! (never the whole completion), and stop strings are searched in the new text only (plus
//! the overlap a stop string could straddle). Text that might still become a stop string
//! is held back from streaming until it is clear.

use tiller_data::Tokenizer;

use crate::error::Result;

/// Turns appended tokens into appended text, as HF's `TextStreamer` and vLLM do: decode
/// the tokens since `prefix` with and without the newest ones and emit the difference once
/// it no longer ends in an incomplete UTF-8 sequence.
#[derive(Debug, Default, Clone)]
pub struct Detokenizer {
    prefix: usize,
    read: usize,
}

impl Detokenizer {
    /// New text after `tokens` (the whole completion so far) grew.
    pub fn next(&mut self, tokenizer: &Tokenizer, tokens: &[u32]) -> Result<String> {
        let before = tokenizer.decode(&tokens[self.prefix..self.read], true)?;
        let now = tokenizer.decode(&tokens[self.prefix..], true)?;
        if now.len() <= before.len() || now.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let delta = match now.strip_prefix(before.as_str()) {
            Some(delta) => delta.to_owned(),
            // A tokenizer whose decode is not prefix-stable: emit what is new by length.
            None => now.get(before.len()..).unwrap_or_default().to_owned(),
        };
        self.prefix = self.read;
        self.read = tokens.len();
        Ok(delta)
    }
}

/// The completion's text so far, the stop strings searched in it as it grows, and how much
/// of it has been handed out for streaming.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    longest: usize,
    text: String,
    streamed: usize,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let longest = stops.iter().map(String::len).max().unwrap_or(0);
        StopMatcher {
            stops,
            longest,
            text: String::new(),
            streamed: 0,
        }
    }

    /// Appends `delta`; returns the byte offset of the first stop string if one has now
    /// appeared. Only the new text and the `longest - 1` bytes before it are searched.
    pub fn push(&mut self, delta: &str) -> Option<usize> {
        let old = self.text.len();
        self.text.push_str(delta);
        if self.stops.is_empty() || delta.is_empty() {
            return None;
        }
        let mut from = old.saturating_sub(self.longest.saturating_sub(1));
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let window = &self.text[from..];
        self.stops
            .iter()
            .filter_map(|s| window.find(s.as_str()))
            .min()
            .map(|i| from + i)
    }

    /// Text not yet streamed that can no longer turn into a stop string.
    pub fn take_safe(&mut self) -> String {
        let held = self.held_back();
        let end = self.text.len() - held;
        if end <= self.streamed {
            return String::new();
        }
        let out = self.text[self.streamed..end].to_owned();
        self.streamed = end;
        out
    }

    /// Everything not yet streamed of `final_text` (the completion as finally decoded).
    pub fn take_rest(&mut self, final_text: &str) -> String {
        let out = final_text
            .get(self.streamed..)
            .unwrap_or_default()
            .to_owned();
        self.streamed = final_text.len().max(self.streamed);
        out
    }

    /// Length of the longest suffix of the text that is a proper prefix of a stop string.
    fn held_back(&self) -> usize {
        let max = self.longest.saturating_sub(1).min(self.text.len());
        (1..=max)
            .rev()
            .find(|&n| {
                let start = self.text.len() - n;
                self.text.is_char_boundary(start)
                    && self
                        .stops
                        .iter()
                        .any(|s| s.starts_with(&self.text[start..]))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    #[test]
    fn a_stop_string_split_across_pushes_is_found_and_never_streamed() {
        let mut m = StopMatcher::new(&["END".to_owned()]);
        assert_eq!(m.push("abc E"), None);
        assert_eq!(m.take_safe(), "abc ");
        assert_eq!(m.push("N"), None);
        assert_eq!(m.take_safe(), "");
        assert_eq!(m.push("D!"), Some(4));
    }

    #[test]
    fn held_text_that_turns_out_not_to_be_a_stop_is_released() {
        let mut m = StopMatcher::new(&["END".to_owned()]);
        assert_eq!(m.push("xE"), None);
        assert_eq!(m.take_safe(), "x");
        assert_eq!(m.push("x"), None);
        assert_eq!(m.take_safe(), "Ex");
    }
}
