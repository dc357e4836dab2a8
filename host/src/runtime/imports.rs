//! Everything a guest may import: WASI preview 1 (capability-free, as the
//! store's context is built) and the `madrpc` host functions.

use super::console::ConsoleStream;
use super::state::CallState;
use super::subcall;
use wasmtime::{Caller, Linker};

/// Links everything a guest may import: WASI preview 1 (capability-free as
/// configured above) and the `madrpc` host functions.
pub(crate) fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |state: &mut CallState| &mut state.wasi)?;
    link_host_functions(linker)
}

/// Links the `madrpc` host functions alone.
pub(crate) fn link_host_functions(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    subcall::link(linker)?;
    linker.func_wrap(
        "madrpc",
        "console_write",
        |mut caller: Caller<'_, CallState>,
         stream: i32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<()> {
            let stream = ConsoleStream::from_abi(stream)
                .ok_or_else(|| wasmtime::format_err!("unknown console stream {stream}"))?;
            let memory = caller
                .get_export("memory")
                .and_then(|export| export.into_memory())
                .ok_or_else(|| wasmtime::format_err!("the guest exports no memory"))?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let start = ptr as usize;
            let bytes = data
                .get(start..start.saturating_add(len as usize))
                .ok_or_else(|| wasmtime::format_err!("console write out of bounds"))?;
            state.console.write(stream, bytes);
            Ok(())
        },
    )?;
    Ok(())
}
