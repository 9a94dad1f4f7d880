// Run by graphile-worker.sh: queue JOBS no-op jobs in bulk, then time one
// worker (CONCURRENCY) from start until the jobs table is empty.
import { run, makeWorkerUtils, Logger } from "graphile-worker";
import pg from "pg";

const [url, jobsArg, concArg, mode, lqArg] = process.argv.slice(2);
const jobs = Number(jobsArg);
const concurrency = Number(concArg);
const preset =
  mode === "best"
    ? { worker: { localQueue: { size: Number(lqArg) }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } }
    : {};

// Errors only: a log line per job would measure the terminal.
const quiet = new Logger(() => (level, message) => {
  if (level === "error") console.error(message);
});
const utils = await makeWorkerUtils({ connectionString: url, logger: quiet });
await utils.migrate();
const client = new pg.Client({ connectionString: url });
await client.connect();
await client.query("truncate graphile_worker._private_jobs cascade");
const chunk = 10000;
for (let i = 0; i < jobs; i += chunk) {
  const n = Math.min(chunk, jobs - i);
  await client.query(
    "select graphile_worker.add_jobs(array(select ('noop', '{}'::json, null, null, null, null, null, null)::graphile_worker.job_spec from generate_series(1, $1)))",
    [n],
  );
}
await utils.release();

const start = process.hrtime.bigint();
const runner = await run({
  connectionString: url,
  concurrency,
  noHandleSignals: true,
  pollInterval: 1000,
  logger: quiet,
  preset,
  taskList: { noop: async () => {} },
});
for (;;) {
  const { rows } = await client.query("select count(*)::int as n from graphile_worker._private_jobs");
  if (rows[0].n === 0) break;
  await new Promise((r) => setTimeout(r, 20));
}
const secs = Number(process.hrtime.bigint() - start) / 1e9;
await runner.stop();
await client.end();
const label = mode === "best" ? `best (localQueue.size ${lqArg}, batched completion)` : "defaults";
console.log(`graphile-worker ${label}: ${jobs} jobs in ${secs.toFixed(2)} s = ${Math.round(jobs / secs)} jobs/s`);
