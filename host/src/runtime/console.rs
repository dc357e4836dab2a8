//! Bounded capture of a call's `console.*` output.

/// The stream a console line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleStream {
    /// `console.log`, `console.info`, `console.debug`.
    Log,
    /// `console.error`, `console.warn`.
    Error,
}

impl ConsoleStream {
    /// The stream with the guest ABI's number, if it is one.
    pub(crate) fn from_abi(stream: i32) -> Option<Self> {
        match stream {
            1 => Some(ConsoleStream::Log),
            2 => Some(ConsoleStream::Error),
            _ => None,
        }
    }
}

/// One line of console output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    /// Where it was written.
    pub stream: ConsoleStream,
    /// The text, without the trailing newline.
    pub text: String,
}

/// A call's console output: the lines kept and how many bytes were dropped
/// because the call wrote more than its limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleOutput {
    /// The lines kept, in order.
    pub lines: Vec<ConsoleLine>,
    /// Bytes written past the limit and dropped.
    pub dropped_bytes: usize,
}

/// Collects console writes up to a byte limit and splits them into lines.
#[derive(Debug)]
pub(crate) struct ConsoleCapture {
    limit: usize,
    kept: usize,
    pending: [Vec<u8>; 2],
    output: ConsoleOutput,
}

impl ConsoleCapture {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            kept: 0,
            pending: [Vec::new(), Vec::new()],
            output: ConsoleOutput::default(),
        }
    }

    /// Appends a write, keeping at most the remaining budget.
    pub(crate) fn write(&mut self, stream: ConsoleStream, bytes: &[u8]) {
        let room = self.limit - self.kept;
        let (kept, dropped) = bytes.split_at(bytes.len().min(room));
        self.kept += kept.len();
        self.output.dropped_bytes += dropped.len();
        let pending = &mut self.pending[stream as usize];
        pending.extend_from_slice(kept);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            self.output.lines.push(ConsoleLine {
                stream,
                text: String::from_utf8_lossy(&line[..end]).into_owned(),
            });
        }
    }

    /// The lines written, with any unterminated last line of each stream.
    pub(crate) fn finish(mut self) -> ConsoleOutput {
        for stream in [ConsoleStream::Log, ConsoleStream::Error] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.output.lines.push(ConsoleLine {
                    stream,
                    text: String::from_utf8_lossy(&rest).into_owned(),
                });
            }
        }
        self.output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_per_stream() {
        let mut capture = ConsoleCapture::new(1024);
        capture.write(ConsoleStream::Log, b"a b");
        capture.write(ConsoleStream::Error, b"oops\n");
        capture.write(ConsoleStream::Log, b"\nc\n");
        let output = capture.finish();
        let texts: Vec<_> = output
            .lines
            .iter()
            .map(|l| (l.stream, l.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                (ConsoleStream::Error, "oops"),
                (ConsoleStream::Log, "a b"),
                (ConsoleStream::Log, "c")
            ]
        );
        assert_eq!(output.dropped_bytes, 0);
    }

    #[test]
    fn drops_and_counts_output_past_the_limit() {
        let mut capture = ConsoleCapture::new(8);
        capture.write(ConsoleStream::Log, b"12345\n");
        capture.write(ConsoleStream::Log, b"67890\n");
        let output = capture.finish();
        assert_eq!(output.lines[0].text, "12345");
        assert_eq!(output.lines[1].text, "67");
        assert_eq!(output.dropped_bytes, 4);
    }
}
