//! A server-sent events reader for OpenAI's streaming answers: bytes in (split anywhere,
//! across UTF-8 characters too), the `data:` payload of each complete event out. Lines may
//! end in `\n` or `\r\n`; comments (`:`) and other fields (`event:`, `id:`) are ignored,
//! several `data:` lines of one event are joined with `\n` (the SSE spec).

/// Buffers a stream's bytes until whole events have arrived.
#[derive(Default)]
pub struct SseReader {
    pending: Vec<u8>,
    data: Option<String>,
}

impl SseReader {
    /// Feeds `bytes`; returns the payloads of the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                events.extend(self.data.take());
            } else if let Some(value) = line.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                }
            }
        }
        events
    }

    /// The last event when the stream ends without its blank line.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let mut last = self.push(&[]);
        if !rest.is_empty() {
            last.extend(self.push(&[rest.as_slice(), b"\n\n"].concat()));
        }
        last.pop().or_else(|| self.data.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = "data: {\"a\": \"é\"}\r\n\r\n: keep-alive\n\nevent: x\ndata: one\ndata: two\n\ndata: [DONE]\n\n";
        let bytes = stream.as_bytes();
        for cut in 0..bytes.len() {
            let mut reader = SseReader::default();
            let mut events = reader.push(&bytes[..cut]);
            events.extend(reader.push(&bytes[cut..]));
            assert_eq!(
                events,
                ["{\"a\": \"é\"}", "one\ntwo", "[DONE]"],
                "cut at {cut}"
            );
            assert_eq!(reader.finish(), None);
        }
    }

    #[test]
    fn an_unterminated_last_event_is_kept() {
        let mut reader = SseReader::default();
        assert!(reader.push(b"data: {}\n\ndata: last").len() == 1);
        assert_eq!(reader.finish().as_deref(), Some("last"));
    }
}
