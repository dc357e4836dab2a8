//! Where log lines go: a buffer in memory that a thread of its own writes
//! to stderr a few milliseconds at a time. A call never waits on the
//! terminal or pipe behind stderr, and a busy node does not wake a thread
//! for every line: the writer thread is woken only when the buffer goes
//! from empty to holding a line, then gathers what arrives for
//! `GATHER` and writes it in one go. Nothing is dropped: past
//! `MAX_BUFFERED` bytes, whoever logs waits for room.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread lets lines gather after the first one.
const GATHER: Duration = Duration::from_millis(10);

/// Bytes held before whoever logs waits for the writer thread.
const MAX_BUFFERED: usize = 4 << 20;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the writer thread: a first line, or the end.
    filled: Condvar,
    /// Wakes those waiting for room.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hands out writers into the buffer; given to the log subscriber.
#[derive(Clone)]
pub struct BufferedStderr {
    shared: Arc<Shared>,
}

/// Writes out what is left and stops the writer thread when dropped: hold
/// it until the process ends.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A buffer for log lines and the thread that writes it to stderr.
pub fn stderr() -> std::io::Result<(BufferedStderr, FlushGuard)> {
    let shared = Arc::new(Shared::default());
    let thread = std::thread::Builder::new()
        .name("madrpc-log".into())
        .spawn({
            let shared = shared.clone();
            move || write_out(&shared, &mut std::io::stderr())
        })?;
    Ok((
        BufferedStderr {
            shared: shared.clone(),
        },
        FlushGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The writer thread: waits for a line, lets more gather, writes them all.
fn write_out(shared: &Shared, out: &mut impl Write) {
    let mut spare = Vec::new();
    loop {
        let mut buffer = shared.lock();
        while buffer.bytes.is_empty() && !buffer.closed {
            buffer = shared
                .filled
                .wait(buffer)
                .unwrap_or_else(|p| p.into_inner());
        }
        let closed = buffer.closed;
        if !closed {
            drop(buffer);
            std::thread::sleep(GATHER);
            buffer = shared.lock();
        }
        std::mem::swap(&mut buffer.bytes, &mut spare);
        drop(buffer);
        shared.drained.notify_all();
        // A failed write (stderr closed) has nowhere to be reported.
        let _ = out.write_all(&spare).and_then(|()| out.flush());
        spare.clear();
        if closed && shared.lock().bytes.is_empty() {
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.filled.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One log line's writer.
pub struct LineWriter {
    shared: Arc<Shared>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.shared.lock();
        while buffer.bytes.len() >= MAX_BUFFERED && !buffer.closed {
            buffer = self
                .shared
                .drained
                .wait(buffer)
                .unwrap_or_else(|p| p.into_inner());
        }
        let first = buffer.bytes.is_empty();
        buffer.bytes.extend_from_slice(bytes);
        drop(buffer);
        if first {
            self.shared.filled.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: self.shared.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_written_in_order_and_the_rest_on_drop() {
        let shared = Arc::new(Shared::default());
        let (sink_tx, sink_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        struct Sink(std::sync::mpsc::Sender<Vec<u8>>);
        impl Write for Sink {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.send(bytes.to_vec());
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let thread = std::thread::spawn({
            let shared = shared.clone();
            move || write_out(&shared, &mut Sink(sink_tx))
        });
        let guard = FlushGuard {
            shared: shared.clone(),
            thread: Some(thread),
        };
        let writers = BufferedStderr { shared };
        let lines: Vec<String> = (0..10_000).map(|i| format!("line {i}\n")).collect();
        for line in &lines {
            writers.make_writer().write_all(line.as_bytes()).unwrap();
        }
        drop(guard);
        let written: Vec<u8> = sink_rx.iter().flatten().collect();
        assert_eq!(String::from_utf8(written).unwrap(), lines.concat());
    }
}
