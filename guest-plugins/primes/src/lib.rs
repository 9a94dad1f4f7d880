//! `primes`: real CPU work (trial division) with progress about every 1%,
//! so fuel consumption and progress bars can be seen.
use cojobs_plugin::{export_plugin, progress, Failure, Job, ParamSpec, Plugin, PluginInfo};

#[derive(serde::Deserialize)]
struct Params {
    #[serde(default = "default_limit")]
    limit: u64,
}
fn default_limit() -> u64 {
    100_000
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

struct Primes;

impl Plugin for Primes {
    fn describe() -> PluginInfo {
        PluginInfo::new("primes", env!("CARGO_PKG_VERSION"), "Counts primes below a limit by trial division.")
            .param(ParamSpec::integer("limit", "Count primes below this number").default(100_000))
    }

    fn run(job: Job) -> Result<String, Failure> {
        let limit = job.params::<Params>()?.limit;
        let step = (limit / 100).max(1);
        let mut count = 0u64;
        for n in 0..limit {
            if n % step == 0 {
                let pct = (n * 100 / limit) as u8;
                progress(pct, Some(&format!("{count} primes below {n}")));
            }
            count += is_prime(n) as u64;
        }
        progress(100, Some("done"));
        Ok(format!("{count} primes below {limit}"))
    }
}

export_plugin!(Primes);
