//! `console.*` output routed to the host instead of WASI stdout/stderr.

use crate::host::{self, ConsoleStream};
use std::io::{self, Write};

/// A `Write` sink for one console stream; Javy's console formats the
/// arguments and writes them here piece by piece, ending with a newline.
pub struct HostConsole(pub ConsoleStream);

impl Write for HostConsole {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        host::console_write(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
