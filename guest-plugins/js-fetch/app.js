// js-fetch: reads a JSON document over HTTP and summarises it (contract 0.2).
//
// The URL is the `url` parameter, or the side file's `[config]` `url`; a
// `[secrets]` `token`, when set, is sent as a bearer token (mode `verbose`
// logs the request headers: the host redacts the token). Redirects are
// followed up to 5 times (by fetch itself, or here when it hands back the
// 3xx), each one a new request the host checks against
// `allowed_hosts`. A 429 or 503 asks to be retried after its `Retry-After`.
// The result is `{status, bytes, keys}`; `notify`, when given, queues a child
// job of that type with `{"name": "<url> answered <status>"}`.
//
// Build: scripts/build-js-plugins.sh. `fetch` is componentize-js's own, over
// wasi:http (so this plugin is built without `-d http`); `run` may be async:
// componentize-js runs the event loop until its promise settles.
import { progress, log, setResult } from 'cojobs:plugin/host@0.2.0';
import { get, secret } from 'cojobs:plugin/config@0.2.0';
import { queueJob } from 'cojobs:plugin/jobs@0.2.0';

export function describe() {
  return {
    name: 'js-fetch',
    version: '0.2.0',
    description: 'Reads a JSON document over HTTP and summarises it (JavaScript).',
    modes: ['quiet', 'verbose'],
    params: [
      { name: 'url', help: "The document's URL (else the side file's config url)", kind: 'text', required: false, choices: [] },
      { name: 'notify', help: 'A job type to queue a child of, told the outcome', kind: 'text', required: false, choices: [] },
    ],
  };
}

// GET `url`, following redirects (each checked by the host again).
async function fetchFollowing(url, headers, verbose) {
  for (let i = 0; i <= 5; i++) {
    if (verbose) log('debug', `GET ${url} with ${JSON.stringify(headers)}`);
    let resp;
    try {
      resp = await fetch(url, { headers });
    } catch (e) {
      // A denied request, a refused connection: the host's log says which.
      throw { tag: 'retry', val: `request to ${url} failed: ${e}` };
    }
    const next = resp.headers.get('location');
    if (resp.status >= 300 && resp.status < 400 && next) {
      log('info', `redirected to ${next}`);
      url = next;
      continue;
    }
    return [url, resp];
  }
  throw { tag: 'discard', val: 'more than 5 redirects' };
}

export async function run(job) {
  const params = JSON.parse(job.params);
  const first = params.url ?? get('url');
  if (!first) {
    throw { tag: 'discard', val: 'no url: give the url parameter or config url' };
  }
  const headers = { accept: 'application/json' };
  const token = secret('token');
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  progress(0, `fetching ${first}`);
  const [url, resp] = await fetchFollowing(first, headers, job.mode === 'verbose');
  const body = await resp.text();
  if (resp.status === 429 || resp.status === 503) {
    const after = Number.parseInt(resp.headers.get('retry-after') ?? '', 10);
    const seconds = Number.isInteger(after) && after >= 0 ? after : 60;
    throw { tag: 'retry-after', val: { seconds, message: `${url} answered ${resp.status}: retry in ${seconds} s` } };
  }
  if (resp.status >= 400) {
    throw { tag: 'retry', val: `${url} answered ${resp.status}` };
  }
  let doc;
  try {
    doc = JSON.parse(body);
  } catch (e) {
    throw { tag: 'discard', val: `${url} did not answer JSON: ${e}` };
  }
  const keys = doc !== null && typeof doc === 'object' && !Array.isArray(doc) ? Object.keys(doc).length : 0;
  const bytes = new TextEncoder().encode(body).length;
  setResult(JSON.stringify({ status: resp.status, bytes, keys }));
  if (params.notify) {
    const n = queueJob(params.notify, JSON.stringify({ name: `${url} answered ${resp.status}` }), {});
    log('info', `queued child ${n}: ${params.notify}`);
  }
  progress(100, 'done');
  return `fetched ${url}: ${bytes} bytes, ${keys} keys`;
}
