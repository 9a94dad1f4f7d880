// js-hello: a cojobs plugin in JavaScript (contract 0.2), built with componentize-js.
//
// Build: scripts/build-js-plugins.sh
//   (componentize-js app.js -w wit -n plugin -d fetch-event -o js-hello.wasm)
//
// WIT -> JS: exported functions are named exports; enums are their WIT names as
// strings ('info', 'in-progress'); option<T> is the value or undefined;
// result<string, failure> is "return the string" or "throw the failure variant"
// ({ tag: 'retry', val: '...' }, { tag: 'retry-after', val: { seconds, message } }).
// Throwing anything else (an Error) traps: the job ends X.
import { progress, log, cancelRequested, recordHistory } from 'cojobs:plugin/host@0.2.0';

const OUTCOMES = ['ok', 'retry', 'discard', 'raise'];

export function describe() {
  return {
    name: 'js-hello',
    version: '0.2.0',
    description: 'Greets someone from JavaScript; can succeed, fail or explode on request.',
    modes: ['fast', 'slow'],
    params: [
      {
        name: 'name',
        help: 'Who to greet.',
        kind: 'text',
        required: false,
        choices: [],
        default: JSON.stringify('world'),
      },
      {
        name: 'outcome',
        help: 'How the run ends: ok, retry, discard, or raise (an uncaught exception).',
        kind: 'text',
        required: false,
        choices: OUTCOMES,
        default: JSON.stringify('ok'),
      },
    ],
  };
}

export function run(job) {
  const params = JSON.parse(job.params || '{}');
  const name = String(params.name ?? 'world');
  const outcome = String(params.outcome ?? 'ok');
  const slow = job.mode === 'slow';

  progress(0, `greeting ${name}`);
  log('info', `js-hello job ${job.id} (after ${job.retryCount} retries): name=${JSON.stringify(name)} outcome=${outcome}`);
  if (slow) {
    // Busy work in steps, checking for cancellation between them.
    for (let i = 0; i < 10; i++) {
      if (cancelRequested()) {
        throw { tag: 'discard', val: 'cancelled' };
      }
      let x = 0;
      for (let j = 0; j < 1_000_000; j++) x += j;
    }
  }
  progress(50, 'half way');
  recordHistory({ recordKey: name, comment: `greeted ${name}`, status: 'ok' });

  if (outcome === 'retry') {
    throw { tag: 'retry', val: `js asked to retry: ${name}` };
  }
  if (outcome === 'discard') {
    throw { tag: 'discard', val: `js gave up: ${name}` };
  }
  if (outcome === 'raise') {
    throw new Error(`js exploded: ${name}`);
  }

  progress(100, 'done');
  return `hello, ${name} from JavaScript`;
}
