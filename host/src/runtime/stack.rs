//! Making sure a call runs on a thread with room for the Wasm stack.
//!
//! Wasm frames live on the native stack of the thread that calls in, up to
//! [`WASM_STACK_BYTES`]. A thread with less room left (a 2 MiB test thread,
//! a small worker) would fault past its guard page instead of getting a clean
//! stack-overflow trap, so such calls hop to a thread of their own.

/// The most native stack Wasm code may use (Wasmtime's `max_wasm_stack`).
/// 4 MiB lets QuickJS recurse a few thousand JS frames deep.
pub const WASM_STACK_BYTES: usize = 4 << 20;

/// Stack size of threads that run calls: the Wasm stack, the host frames
/// around it and a generous margin.
pub const CALL_THREAD_STACK_BYTES: usize = WASM_STACK_BYTES + (4 << 20);

/// Host frames that sit on the stack below the Wasm frames.
const HOST_MARGIN_BYTES: usize = 512 << 10;

/// Whether the current thread has room for a call from here.
pub fn has_room_for_call() -> bool {
    thread_local! {
        static LOW_BOUND: Option<usize> = stack_low_bound();
    }
    let marker = 0u8;
    let here = std::ptr::addr_of!(marker) as usize;
    LOW_BOUND.with(|low| match low {
        Some(low) => here.saturating_sub(*low) >= WASM_STACK_BYTES + HOST_MARGIN_BYTES,
        None => false,
    })
}

/// Runs `f` on the current thread when it has room for a call, else on a
/// new thread with [`CALL_THREAD_STACK_BYTES`] of stack.
pub fn with_room<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if has_room_for_call() {
        return f();
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("madrpc-call".into())
            .stack_size(CALL_THREAD_STACK_BYTES)
            .spawn_scoped(scope, f)
            .map(|handle| handle.join())
    })
    .expect("spawning a call thread")
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The lowest usable address of the current thread's stack.
#[cfg(target_os = "linux")]
fn stack_low_bound() -> Option<usize> {
    use std::mem::MaybeUninit;
    // SAFETY: plain libc queries on the calling thread's own attributes; the
    // attribute object is initialized by pthread_getattr_np before use and
    // destroyed after.
    unsafe {
        let mut attr = MaybeUninit::<libc::pthread_attr_t>::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let mut addr = std::ptr::null_mut();
        let mut size = 0;
        let mut guard = 0;
        let ok = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size) == 0
            && libc::pthread_attr_getguardsize(attr.as_ptr(), &mut guard) == 0;
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        ok.then(|| addr as usize + guard)
    }
}

#[cfg(not(target_os = "linux"))]
fn stack_low_bound() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_thread_has_no_room_and_a_call_thread_has() {
        let small = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(has_room_for_call)
            .unwrap()
            .join()
            .unwrap();
        assert!(!small);
        let large = std::thread::Builder::new()
            .stack_size(CALL_THREAD_STACK_BYTES)
            .spawn(has_room_for_call)
            .unwrap()
            .join()
            .unwrap();
        assert!(large);
    }

    #[test]
    fn with_room_runs_the_closure_either_way() {
        let value = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(|| with_room(has_room_for_call))
            .unwrap()
            .join()
            .unwrap();
        assert!(value);
    }
}
