//! A module's copy-on-write memory image, made when the module is loaded.
//!
//! Wasmtime writes the image into a memfd and seals it read-only the first
//! time the module is instantiated. Linux refuses that seal with `EBUSY`
//! while anything else holds a reference to one of the memfd's fresh pages
//! (page-cache batches, migration, compaction) for longer than the kernel
//! waits, about 150 ms: rare, and seen only on loaded machines. Made lazily,
//! the image would fail whichever call came first with an internal error.
//! Made here, a load retries it, and every call finds it ready.

use std::time::Duration;
use wasmtime::Module;

/// How many times the image is attempted before the load fails.
const ATTEMPTS: u32 = 5;

/// The wait before the second attempt, doubled before each next one; the
/// kernel has already waited about 150 ms inside each refused attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);

/// Makes `module`'s memory image now, retrying while the kernel reports the
/// seal busy.
pub(super) fn prepare(module: &Module) -> wasmtime::Result<()> {
    retry_busy_seal(|| module.initialize_copy_on_write_image())
}

/// Runs `attempt` until it succeeds, fails otherwise than with a busy seal,
/// or has been tried [`ATTEMPTS`] times.
fn retry_busy_seal(mut attempt: impl FnMut() -> wasmtime::Result<()>) -> wasmtime::Result<()> {
    let mut backoff = FIRST_BACKOFF;
    let mut tried = 1;
    loop {
        match attempt() {
            Err(error) if tried < ATTEMPTS && is_busy(&error) => {
                tracing::warn!(attempt = tried, %error, "the kernel refused to seal a module's memory image; trying again");
                std::thread::sleep(backoff);
                backoff *= 2;
                tried += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Whether `error` comes from an `EBUSY`: of the steps that make an image
/// (create the memfd, write it, seal it), only sealing returns it.
fn is_busy(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(libc::EBUSY)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error Wasmtime returns when the seal is refused: the memfd
    /// crate's message over the kernel's `EBUSY`.
    fn busy_seal() -> wasmtime::Error {
        wasmtime::Error::new(std::io::Error::from_raw_os_error(libc::EBUSY))
            .context("cannot add seals to the memfd")
    }

    #[test]
    fn a_busy_seal_is_tried_again_until_it_succeeds() {
        let mut tries = 0;
        let outcome = retry_busy_seal(|| {
            tries += 1;
            if tries < 3 { Err(busy_seal()) } else { Ok(()) }
        });
        assert!(outcome.is_ok());
        assert_eq!(tries, 3);
    }

    #[test]
    fn a_seal_that_stays_busy_fails_the_load_after_the_last_attempt() {
        let mut tries = 0;
        let outcome = retry_busy_seal(|| {
            tries += 1;
            Err(busy_seal())
        });
        let error = outcome.expect_err("the seal never succeeds");
        assert!(is_busy(&error), "{error:#}");
        assert_eq!(tries, ATTEMPTS);
    }

    #[test]
    fn other_errors_are_not_tried_again() {
        let mut tries = 0;
        let outcome = retry_busy_seal(|| {
            tries += 1;
            Err(wasmtime::Error::new(std::io::Error::from_raw_os_error(
                libc::ENOMEM,
            )))
        });
        assert!(outcome.is_err());
        assert_eq!(tries, 1);
    }
}
