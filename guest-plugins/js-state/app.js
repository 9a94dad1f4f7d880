// js-state: proves that no state passes from one job to the next.
//
// Each run reports what it found in module-level and global state, then
// changes all of it. Every job gets a fresh instance of the component, so
// every run must find the state as the build left it:
// "fresh: seen=undefined runs=0 cache=0".
let runs = 0;
const cache = new Map();

export function describe() {
  return {
    name: 'js-state',
    version: '0.1.0',
    description: 'Reports the module-level state it finds, then changes it.',
    modes: [],
    params: [],
  };
}

export function run(job) {
  const found = `seen=${globalThis.seen} runs=${runs} cache=${cache.size}`;
  const fresh = globalThis.seen === undefined && runs === 0 && cache.size === 0;
  globalThis.seen = job.id;
  runs += 1;
  cache.set(job.id, 'x'.repeat(100_000));
  return (fresh ? 'fresh: ' : 'stale: ') + found;
}
