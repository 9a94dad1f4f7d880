//! What `cojobs bench` measures around each phase and reports beside each
//! rate: wall time, the process's CPU time (user and system, every thread:
//! the bench process hosts the runner, its database thread and the
//! sandbox) and its context switches, from `getrusage(RUSAGE_SELF)`; and
//! the machine the figures come from (CPU model, cores, load), since a
//! figure means little without them (docs/performance.md).

use std::time::{Duration, Instant};

use serde::Serialize;

/// The process's resource counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    user: Duration,
    sys: Duration,
    voluntary: u64,
    involuntary: u64,
}

fn timeval(t: libc::timeval) -> Duration {
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u64::try_from(t.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros)
}

impl Usage {
    /// This process's counters now (zeros if the kernel refuses, which
    /// `getrusage(RUSAGE_SELF)` does only for a bad pointer).
    fn now() -> Usage {
        let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `ru` points to writable memory the size of a `rusage`;
        // `getrusage` writes it whole on success and nothing otherwise, and
        // a zeroed `rusage` (plain integers) is valid either way.
        #[allow(unsafe_code)]
        let ru = unsafe {
            if libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) != 0 {
                return Usage::default();
            }
            ru.assume_init()
        };
        Usage {
            user: timeval(ru.ru_utime),
            sys: timeval(ru.ru_stime),
            voluntary: u64::try_from(ru.ru_nvcsw).unwrap_or(0),
            involuntary: u64::try_from(ru.ru_nivcsw).unwrap_or(0),
        }
    }
}

/// A phase being measured: started by [`Meter::start`], ended by
/// [`Meter::stop`].
pub(super) struct Meter {
    wall: Instant,
    usage: Usage,
}

/// One phase's figures: a rate, and what each job cost the process.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Phase {
    pub jobs: usize,
    pub seconds: f64,
    pub jobs_per_s: f64,
    /// Wall time per job times the number of workers.
    pub us_per_job_per_worker: f64,
    pub cpu_us_per_job: f64,
    pub user_us_per_job: f64,
    pub sys_us_per_job: f64,
    /// Voluntary + involuntary.
    pub context_switches_per_job: f64,
    pub voluntary_switches_per_job: f64,
    pub involuntary_switches_per_job: f64,
}

impl Meter {
    pub(super) fn start() -> Meter {
        Meter {
            usage: Usage::now(),
            wall: Instant::now(),
        }
    }

    /// The figures of `jobs` jobs run by `workers` since [`Meter::start`].
    pub(super) fn stop(self, jobs: usize, workers: usize) -> Phase {
        let wall = self.wall.elapsed();
        let now = Usage::now();
        let n = jobs.max(1) as f64;
        let per_job = |d: Duration| d.as_secs_f64() * 1e6 / n;
        let user = now.user.saturating_sub(self.usage.user);
        let sys = now.sys.saturating_sub(self.usage.sys);
        let vol = now.voluntary.saturating_sub(self.usage.voluntary) as f64 / n;
        let invol = now.involuntary.saturating_sub(self.usage.involuntary) as f64 / n;
        Phase {
            jobs,
            seconds: wall.as_secs_f64(),
            jobs_per_s: jobs as f64 / wall.as_secs_f64().max(1e-9),
            us_per_job_per_worker: per_job(wall) * workers as f64,
            cpu_us_per_job: per_job(user + sys),
            user_us_per_job: per_job(user),
            sys_us_per_job: per_job(sys),
            context_switches_per_job: vol + invol,
            voluntary_switches_per_job: vol,
            involuntary_switches_per_job: invol,
        }
    }
}

impl Phase {
    /// The line printed under a phase's rate.
    pub(super) fn cost_line(&self) -> String {
        format!(
            "              CPU {:.1} µs per job (user {:.1} + sys {:.1}), {:.2} context switches per job ({:.2} voluntary)",
            self.cpu_us_per_job,
            self.user_us_per_job,
            self.sys_us_per_job,
            self.context_switches_per_job,
            self.voluntary_switches_per_job,
        )
    }
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Machine {
    /// /proc/cpuinfo's first `model name`, as it is (on a virtual machine
    /// it may be a generic name such as "AMD EPYC"); "unknown" without one.
    pub cpu_model: String,
    /// Cores this process may use.
    pub cores: usize,
    /// The 1, 5 and 15-minute load averages when the bench started.
    pub load_average: Option<[f64; 3]>,
}

impl Machine {
    pub(super) fn now(cores: usize) -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        Machine {
            cpu_model,
            cores,
            load_average: load_average(),
        }
    }

    pub(super) fn line(&self) -> String {
        let load = match self.load_average {
            Some([a, b, c]) => format!("load average {a:.2} {b:.2} {c:.2}"),
            None => "load average unknown".to_string(),
        };
        format!(
            "machine:      {}, {} cores, {load}",
            self.cpu_model, self.cores
        )
    }
}

/// /proc/loadavg's first three numbers.
fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    Some([it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_counts_this_process_cpu() {
        let m = Meter::start();
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let p = m.stop(10, 2);
        assert!(p.cpu_us_per_job > 0.0, "{p:?}");
        assert!(p.seconds >= 0.03, "{p:?}");
        assert_eq!(p.jobs, 10);
    }
}
