//! `recurse`: recurses without end until the guest stack overflows. Tests
//! that a stack overflow traps and ends the job with a clear summary. With
//! `native: true` the frames hold nothing in linear memory, so wasmtime's own
//! stack limit is hit; otherwise the guest's shadow stack (in linear memory)
//! runs out first.
use cojobs_plugin::{export_plugin, Failure, Job, ParamSpec, Plugin, PluginInfo};

#[derive(serde::Deserialize)]
struct Params {
    #[serde(default)]
    native: bool,
}

#[inline(never)]
fn native(n: u64, step: u64) -> u64 {
    if n == u64::MAX {
        return step;
    }
    // An indirect call (through a black-boxed pointer) the optimiser cannot
    // turn into a loop; the multiply after it keeps it from being a tail call.
    let next: fn(u64, u64) -> u64 = core::hint::black_box(native);
    next(n + step, step).wrapping_mul(n | 1)
}

#[inline(never)]
fn deeper(n: u64) -> u64 {
    // black_box keeps the recursion (and its frame) from being optimised away;
    // the condition is never true but the compiler cannot know.
    let frame = core::hint::black_box([n; 16]);
    if core::hint::black_box(n) == u64::MAX {
        return frame[3];
    }
    core::hint::black_box(deeper(n + 1)) + frame[3]
}

struct Recurse;

impl Plugin for Recurse {
    fn describe() -> PluginInfo {
        PluginInfo::new("recurse", env!("CARGO_PKG_VERSION"), "Recurses until the stack overflows (test plugin).")
            .param(ParamSpec::boolean("native", "Overflow wasmtime's stack, not the shadow stack").default(false))
    }
    fn run(job: Job) -> Result<String, Failure> {
        let p: Params = job.params()?;
        if p.native {
            let step = core::hint::black_box(1);
            return Ok(format!("{}", native(step, step)));
        }
        Ok(format!("{}", deeper(0)))
    }
}

export_plugin!(Recurse);
