//! Reading a server-sent event stream (the job events): the text/event-stream
//! format's `id:`, `event:` and `data:` fields, events separated by a blank
//! line, comments (keep-alives) skipped.

/// One event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Turns chunks of the stream's bytes into events, however the chunks cut
/// the text.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Feeds `chunk`; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        events
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let done = std::mem::take(&mut self.current);
            let had = std::mem::replace(&mut self.has_data, false);
            return (had || done.event.is_some()).then_some(done);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "id" => self.current.id = Some(value.to_owned()),
            "event" => self.current.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_across_chunk_boundaries_and_comments_skipped() {
        let text =
            b": keep-alive\n\nid: 3\nevent: progress\ndata: {\"a\":\ndata: 1}\n\r\ndata: x\n\n";
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for chunk in text.chunks(5) {
            events.extend(parser.feed(chunk));
        }
        assert_eq!(
            events,
            vec![
                SseEvent {
                    id: Some("3".into()),
                    event: Some("progress".into()),
                    data: "{\"a\":\n1}".into()
                },
                SseEvent {
                    id: None,
                    event: None,
                    data: "x".into()
                },
            ]
        );
    }
}
