//! Progress of a long step (a first Cranelift compile, later a job's wait or
//! a deploy) for a person watching a terminal: a spinner with the elapsed
//! time on stderr, erased when the step ends. When stderr is not a terminal
//! (piped, a log file, a service manager) nothing is drawn, so logs stay
//! clean.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Only one indicator draws at a time; steps running beside it stay quiet.
static DRAWING: AtomicBool = AtomicBool::new(false);

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// A step in progress; dropping it ends the step and erases its line.
pub struct Progress {
    drawer: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Progress {
    /// Starts showing `message` (for example "compiling the module") with a
    /// spinner and the seconds since start, if stderr is a terminal.
    pub fn start(message: impl Into<String>) -> Self {
        let quiet = Self { drawer: None };
        if !std::io::stderr().is_terminal() || DRAWING.swap(true, Ordering::AcqRel) {
            return quiet;
        }
        let message = message.into();
        let (stop, stopped) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || draw(&message, &stopped));
        match spawned {
            Ok(handle) => Self {
                drawer: Some((stop, handle)),
            },
            Err(_) => {
                DRAWING.store(false, Ordering::Release);
                quiet
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.drawer.take() {
            let _ = stop.send(());
            let _ = handle.join();
            DRAWING.store(false, Ordering::Release);
        }
    }
}

/// Redraws the line until told to stop, then erases it.
fn draw(message: &str, stopped: &mpsc::Receiver<()>) {
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
    let start = Instant::now();
    let mut stderr = std::io::stderr();
    for frame in FRAMES.iter().cycle() {
        let elapsed = start.elapsed().as_secs_f64();
        // Write errors only lose the indicator.
        let _ = write!(stderr, "\r\x1b[2K{frame} {message} ({elapsed:.1} s)");
        let _ = stderr.flush();
        if stopped.recv_timeout(TICK) != Err(mpsc::RecvTimeoutError::Timeout) {
            break;
        }
    }
    let _ = write!(stderr, "\r\x1b[2K");
    let _ = stderr.flush();
}
