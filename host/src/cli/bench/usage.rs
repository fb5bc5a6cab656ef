//! What a benchmark costs the machine: this process's CPU time, the whole machine's busy
//! and total CPU time, and the resident size, read from the kernel (Linux). Per-variant
//! CPU per transaction shows what the sandbox itself costs even where throughput is noisy.

use std::time::Duration;

/// Cumulative CPU times at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    /// This process, user + system, all threads.
    pub process: Duration,
    /// Every core of the machine, not idle (any process, kernel included).
    pub machine_busy: Duration,
    /// Every core of the machine, idle or not.
    pub machine_total: Duration,
    /// Context switches on the whole machine (`ctxt` in `/proc/stat`).
    pub machine_switches: u64,
}

impl CpuSample {
    /// Now, or `None` where the kernel does not say (non-Linux).
    pub fn now() -> Option<Self> {
        let machine = MachineStat::read()?;
        Some(CpuSample {
            process: process_time()?,
            machine_busy: machine.busy,
            machine_total: machine.total,
            machine_switches: machine.switches,
        })
    }

    /// What was used between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuSample) -> CpuSample {
        CpuSample {
            process: self.process.saturating_sub(earlier.process),
            machine_busy: self.machine_busy.saturating_sub(earlier.machine_busy),
            machine_total: self.machine_total.saturating_sub(earlier.machine_total),
            machine_switches: self
                .machine_switches
                .saturating_sub(earlier.machine_switches),
        }
    }

    pub fn add(&mut self, other: &CpuSample) {
        self.process += other.process;
        self.machine_busy += other.machine_busy;
        self.machine_total += other.machine_total;
        self.machine_switches += other.machine_switches;
    }
}

/// User + system time of this process (`getrusage`, microsecond resolution).
fn process_time() -> Option<Duration> {
    // SAFETY: `getrusage` only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return None;
        }
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Some(Duration::from_micros(
        micros(usage.ru_utime) + micros(usage.ru_stime),
    ))
}

/// The machine-wide counters of `/proc/stat`, since boot.
struct MachineStat {
    /// CPU time of all cores from the `cpu` line; idle and iowait count as not busy.
    busy: Duration,
    total: Duration,
    /// Context switches (`ctxt`).
    switches: u64,
}

impl MachineStat {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        // user nice system idle iowait irq softirq steal (guest time is inside user/nice).
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|t| t.parse().ok())
            .collect::<Option<_>>()?;
        if ticks.len() < 8 {
            return None;
        }
        let switches = stat
            .lines()
            .find_map(|l| l.strip_prefix("ctxt "))?
            .trim()
            .parse()
            .ok()?;
        let total: u64 = ticks.iter().sum();
        let idle = ticks[3] + ticks[4];
        // SAFETY: `sysconf` has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = u64::try_from(hz).ok().filter(|&hz| hz > 0)?;
        let to_duration = |t: u64| Duration::from_micros(t * 1_000_000 / hz);
        Some(MachineStat {
            busy: to_duration(total - idle),
            total: to_duration(total),
            switches,
        })
    }
}

/// The resident set size of this process, in KiB (Linux), for memory-flatness checks.
pub fn resident_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: `sysconf` has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()? / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = CpuSample::now().expect("Linux reports CPU times");
        // Spin until this process has used 20 ms of CPU; on a loaded machine that can take
        // longer than 20 ms of wall time, but not 10 s.
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        let used = loop {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            let used = CpuSample::now().unwrap().since(&before);
            if used.process >= Duration::from_millis(20) || std::time::Instant::now() > give_up {
                break used;
            }
        };
        assert!(used.process >= Duration::from_millis(20), "{used:?}");
        assert!(used.machine_total >= used.machine_busy);
        assert!(resident_kib().unwrap() > 0);
    }
}
