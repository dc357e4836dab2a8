//! The CPU budget of a call: how much processor time it has used, in fuel
//! units.
//!
//! Counting Wasm instructions (Wasmtime fuel) cost QuickJS 10-30% of its
//! speed, because every basic block updates a counter. The budget is the
//! thread's CPU clock instead, read where the epoch check already stops a
//! call (every loop iteration and function entry reaches one): every loop
//! shape is still stopped, and code runs at full speed in between.
//!
//! Reading the thread's CPU clock is a system call (about a microsecond in
//! a VM), too dear for a call of a few microseconds. So a call is charged
//! its wall-clock time until its first check, about a millisecond in, and
//! its CPU time from then on: a short call costs no system call, and a long
//! one is charged what it really used.

use std::time::{Duration, Instant};

/// Fuel units per nanosecond of CPU time: one unit is a tenth of a
/// nanosecond, about what one Wasm instruction took when fuel counted
/// instructions, so the documented budgets kept their meaning (the default
/// 100 billion is 10 s of CPU).
pub const FUEL_PER_NANOSECOND: u64 = 10;

/// Converts fuel units to the CPU time they stand for.
pub fn fuel_to_duration(fuel: u64) -> Duration {
    Duration::from_nanos(fuel / FUEL_PER_NANOSECOND)
}

/// Converts CPU time to fuel units.
pub fn duration_to_fuel(time: Duration) -> u64 {
    u64::try_from(time.as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_mul(FUEL_PER_NANOSECOND)
}

/// Measures the processor time one call uses on its thread.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    /// Time counted so far.
    used: Duration,
    clock: Clock,
}

#[derive(Debug, Clone, Copy)]
enum Clock {
    /// Before the first check: wall-clock time since this instant counts.
    Wall(Instant),
    /// The thread's CPU clock at the last reading.
    Cpu(Duration),
    /// Not counting (the call waits on its sub-calls).
    Paused,
}

impl CpuMeter {
    /// Starts counting now.
    pub(crate) fn start() -> Self {
        Self {
            used: Duration::ZERO,
            clock: Clock::Wall(Instant::now()),
        }
    }

    /// Brings the count up to date, reading the thread's CPU clock, and
    /// returns it in fuel units.
    pub(crate) fn read(&mut self) -> u64 {
        let now = thread_cpu_time();
        match self.clock {
            Clock::Wall(since) => self.used += since.elapsed(),
            Clock::Cpu(last) => self.used += now.saturating_sub(last),
            Clock::Paused => {}
        }
        self.clock = Clock::Cpu(now);
        duration_to_fuel(self.used)
    }

    /// Stops counting until [`CpuMeter::resume`]: the time the call's
    /// thread spends on other work (sub-calls run in place) is not the
    /// call's.
    pub(crate) fn pause(&mut self) {
        self.read();
        self.clock = Clock::Paused;
    }

    /// Counts again after [`CpuMeter::pause`].
    pub(crate) fn resume(&mut self) {
        if matches!(self.clock, Clock::Paused) {
            self.clock = Clock::Cpu(thread_cpu_time());
        }
    }

    /// The count at the end of the call, in fuel units; a call that never
    /// reached a check is charged its wall-clock time without a system call.
    pub(crate) fn finish(&mut self) -> u64 {
        match self.clock {
            Clock::Wall(since) => duration_to_fuel(self.used + since.elapsed()),
            Clock::Paused => duration_to_fuel(self.used),
            Clock::Cpu(_) => self.read(),
        }
    }
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID
    // exists on every Linux and BSD.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(time: Duration) {
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < time {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    #[test]
    fn counts_busy_time_and_not_sleep() {
        let mut meter = CpuMeter::start();
        spin(Duration::from_millis(20));
        let busy = meter.read();
        assert!(
            busy >= duration_to_fuel(Duration::from_millis(15)),
            "{busy}"
        );
        std::thread::sleep(Duration::from_millis(50));
        let after_sleep = meter.read();
        assert!(
            after_sleep - busy < duration_to_fuel(Duration::from_millis(20)),
            "a sleep was counted: {busy} then {after_sleep}"
        );
    }

    #[test]
    fn a_pause_is_not_counted() {
        let mut meter = CpuMeter::start();
        meter.read();
        meter.pause();
        let paused = meter.finish();
        spin(Duration::from_millis(30));
        meter.resume();
        let resumed = meter.finish();
        assert!(
            resumed - paused < duration_to_fuel(Duration::from_millis(10)),
            "{paused} then {resumed}"
        );
    }

    #[test]
    fn units_are_tenths_of_a_nanosecond() {
        assert_eq!(duration_to_fuel(Duration::from_secs(10)), 100_000_000_000);
        assert_eq!(fuel_to_duration(100_000_000_000), Duration::from_secs(10));
    }
}
