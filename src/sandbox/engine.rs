//! The engine's configuration, the linker, and the epoch ticker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{v1, v2};
use super::host::HostState;
use super::limits::{MAX_MEMORY_MIB, MAX_TABLE_ELEMENTS};
use super::{SandboxConfig, SandboxError, TICK};

fn base_config(consume_fuel: bool) -> Config {
    let mut c = Config::new();
    c.consume_fuel(consume_fuel);
    c.epoch_interruption(true);
    // Deep recursion in a guest traps as a stack overflow long before it
    // can hurt the host.
    c.max_wasm_stack(1024 * 1024);
    c.async_stack_size(2 * 1024 * 1024);
    c
}

/// The pooling allocator, sized for `max_instances` concurrent component
/// instances. Limits are generous per component (a componentize-py
/// component has a dozen core instances and tables of ~10k elements), tight
/// in number (a pool slot per concurrent job).
fn pooling(max_instances: u32) -> PoolingAllocationConfig {
    let n = max_instances.max(1);
    let mut p = PoolingAllocationConfig::new();
    p.total_component_instances(n)
        .total_core_instances(n * 32)
        .total_memories(n * 4)
        .total_tables(n * 32)
        .total_stacks(n)
        .max_core_instances_per_component(64)
        .max_memories_per_component(4)
        .max_tables_per_component(32)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_memory_size((MAX_MEMORY_MIB as usize) << 20)
        // Reset the low part of a slot with memset instead of madvise, so a
        // small job's pages stay mapped for the next one, and batch the
        // remaining decommits: each madvise is a TLB shootdown across
        // every core, measured at ~30% of a no-op job's time without these.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(256 << 10)
        .async_stack_keep_resident(256 << 10)
        .decommit_batch_size(32)
        .pagemap_scan(wasmtime::Enabled::Auto);
    p
}

/// Build the engine: pooled where the machine allows it, on-demand where
/// it does not (e.g. a small virtual-memory ulimit).
pub(super) fn build(config: &SandboxConfig) -> Result<(Engine, bool), SandboxError> {
    if std::env::var_os("COJOBS_NO_POOLING").is_none() {
        let mut c = base_config(config.consume_fuel);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(
            config.max_instances,
        )));
        match Engine::new(&c) {
            Ok(e) => return Ok((e, true)),
            Err(e) => tracing::warn!("pooling allocator unavailable, using on-demand: {e:#}"),
        }
    }
    let engine = Engine::new(&base_config(config.consume_fuel))
        .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
    Ok((engine, false))
}

/// WASI Preview 2 (what each job's `WasiCtx` grants decides what works),
/// `wasi:http` (what the side file's `allowed_hosts` grants decides which
/// requests leave), and the host interfaces of both contract versions.
pub(super) fn linker(engine: &Engine) -> Result<Linker<HostState>, SandboxError> {
    let err = |e: wasmtime::Error| SandboxError::Engine(format!("{e:#}"));
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(err)?;
    v1::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(err)?;
    v2::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(err)?;
    Ok(linker)
}

/// A thread that advances the engine's epoch every [`TICK`]; stopped and
/// joined on drop.
pub(super) struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(super) fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("cojobs-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        Ticker { stop, handle }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
