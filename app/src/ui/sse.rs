//! A server-sent-events reader: bytes in as the network delivers them, whole events out. Pure, so
//! the browser's chat stream and the tests share it.

/// One event: its `event:` name (empty when absent) and its `data:` lines joined by newlines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub name: String,
    pub data: String,
}

#[derive(Default)]
pub struct SseReader {
    /// Bytes of a line not yet ended; kept as bytes so a UTF-8 character split across network
    /// chunks is joined before it is decoded.
    line: Vec<u8>,
    name: String,
    data: Vec<String>,
}

impl SseReader {
    /// Feed the next chunk; returns the events it completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut done = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(event) = self.line_done(&String::from_utf8_lossy(&line)) {
                done.push(event);
            }
        }
        done
    }

    fn line_done(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            if self.data.is_empty() {
                self.name.clear();
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(SseEvent { name: std::mem::take(&mut self.name), data });
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.name = value.to_string(),
            "data" => self.data.push(value.to_string()),
            // Comments (keep-alives start with ':'), `id:` and `retry:` mean nothing to us.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = "event: answer\ndata: {\"text\":\"caf\u{e9}\"}\n\n: keep-alive\n\nevent: done\r\ndata: a\r\ndata: b\r\n\r\n";
        let bytes = stream.as_bytes();
        // Every split point, including inside the two-byte é.
        for cut in 0..bytes.len() {
            let mut reader = SseReader::default();
            let mut events = reader.push(&bytes[..cut]);
            events.extend(reader.push(&bytes[cut..]));
            assert_eq!(
                events,
                vec![
                    SseEvent { name: "answer".into(), data: "{\"text\":\"café\"}".into() },
                    SseEvent { name: "done".into(), data: "a\nb".into() },
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_unfinished_event_waits_for_its_blank_line() {
        let mut reader = SseReader::default();
        assert!(reader.push(b"event: x\ndata: 1\n").is_empty());
        assert_eq!(reader.push(b"\n"), vec![SseEvent { name: "x".into(), data: "1".into() }]);
        assert_eq!(reader.push(b"data:2\n\n"), vec![SseEvent { name: String::new(), data: "2".into() }]);
    }
}
