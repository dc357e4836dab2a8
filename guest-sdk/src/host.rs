//! Functions the host provides to the guest.
//!
//! Everything the guest may ask of the outside world is listed here; the host
//! links exactly these and a minimal WASI preview 1 surface (clocks and
//! randomness, no files, no environment, no sockets).

/// Which console stream a line of guest output belongs to.
#[derive(Clone, Copy)]
#[repr(i32)]
pub enum ConsoleStream {
    /// `console.log`, `console.info`, `console.debug`.
    Log = 1,
    /// `console.error`, `console.warn`.
    Error = 2,
}

#[link(wasm_import_module = "madrpc")]
unsafe extern "C" {
    #[link_name = "console_write"]
    fn console_write_raw(stream: i32, ptr: *const u8, len: usize);
    #[link_name = "subcalls_run"]
    fn subcalls_run_raw(ptr: *const u8, len: usize) -> u32;
    #[link_name = "subcalls_take"]
    fn subcalls_take_raw(ptr: *mut u8);
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    #[link_name = "random_get"]
    fn random_get_raw(buf: *mut u8, len: usize) -> u16;
}

/// Hands console output to the host, which bounds and logs it per call.
pub fn console_write(stream: ConsoleStream, bytes: &[u8]) {
    // SAFETY: the host reads `len` bytes at `ptr` from this instance's memory.
    unsafe { console_write_raw(stream as i32, bytes.as_ptr(), bytes.len()) }
}

/// Runs a batch of sub-calls (a JSON array of `{method, params}`) on the
/// host and returns the JSON array of their outcomes, in order. The host
/// ends the call instead of returning when the call's deadline passes.
pub fn run_subcalls(request: String) -> String {
    // SAFETY: the host reads `len` bytes at `ptr`, then writes exactly the
    // length it returned into the buffer we hand to `subcalls_take`.
    let len = unsafe { subcalls_run_raw(request.as_ptr(), request.len()) } as usize;
    let mut outcomes = vec![0u8; len];
    unsafe { subcalls_take_raw(outcomes.as_mut_ptr()) };
    String::from_utf8(outcomes).unwrap_or_else(|_| "[]".to_owned())
}

/// Fills `buf` with fresh entropy from the host, read at call time; false
/// when the host has none.
pub fn random_fill(buf: &mut [u8]) -> bool {
    // SAFETY: the host writes `buf.len()` bytes into `buf`.
    unsafe { random_get_raw(buf.as_mut_ptr(), buf.len()) == 0 }
}

/// Eight bytes of fresh entropy from the host, read at call time (never from
/// the build-time snapshot).
pub fn random_seed() -> u64 {
    let mut buf = [0u8; 8];
    if !random_fill(&mut buf) {
        // No entropy is a host misconfiguration; fall back to a fixed but
        // valid seed rather than failing the call.
        return 0x9E37_79B9_7F4A_7C15;
    }
    u64::from_le_bytes(buf)
}
