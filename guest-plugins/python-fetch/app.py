"""python-fetch: reads a JSON document over HTTP and summarises it (contract 0.2).

The URL is the `url` parameter, or the side file's `[config]` `url`; a
`[secrets]` `token`, when set, is sent as a bearer token (mode `verbose` logs
the request headers: the host redacts the token). Redirects are followed up to
5 times, each one a new request the host checks against `allowed_hosts`. A 429
or 503 asks to be retried after its `Retry-After`. The result is
`{status, bytes, keys}`; `notify`, when given, queues a child job of that type
with `{"name": "<url> answered <status>"}`.

Build: scripts/build-python-plugins.sh (world `plugin-http`: contract 0.2 and
wasi:http, so the cojobs types are `wit_world.imports.cojobs_plugin_types`).
"""
import json
from urllib.parse import urlsplit

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, host, jobs, outgoing_handler
from wit_world.imports.cojobs_plugin_types import (
    ChildOptions,
    Failure_Discard,
    Failure_Retry,
    Failure_RetryAfter,
    Job,
    LogLevel,
    ParamSpec,
    ParamType,
    PluginInfo,
    RetryLater,
)
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.wasi_http_types import (
    ErrorCode_ConnectionLimitReached,
    ErrorCode_HttpRequestDenied,
    ErrorCode_HttpResponseBodySize,
    Fields,
    IncomingBody,
    Method_Get,
    OutgoingBody,
    OutgoingRequest,
    Scheme_Http,
    Scheme_Https,
)


def failure_of(code, url: str) -> Err:
    """A wasi:http error code as the run's failure: denied is for good."""
    if isinstance(code, ErrorCode_HttpRequestDenied):
        return Err(Failure_Discard(f"request denied: {url} is not granted in allowed_hosts, or resolves to an internal address"))
    if isinstance(code, ErrorCode_ConnectionLimitReached):
        return Err(Failure_Retry("the job's HTTP request limit is reached"))
    if isinstance(code, ErrorCode_HttpResponseBodySize):
        return Err(Failure_Retry("the response body is over the job's size limit"))
    return Err(Failure_Retry(f"request to {url} failed: {type(code).__name__}"))


def http_get(url: str, headers: dict) -> tuple:
    """GET `url` through wasi:http: (status, headers by lower-case name, body)."""
    parts = urlsplit(url)
    schemes = {"http": Scheme_Http(), "https": Scheme_Https()}
    if parts.scheme not in schemes or not parts.netloc:
        raise Err(Failure_Discard(f"bad URL '{url}'"))
    req = OutgoingRequest(Fields.from_list([(k, v.encode()) for k, v in headers.items()]))
    req.set_method(Method_Get())
    req.set_scheme(schemes[parts.scheme])
    req.set_authority(parts.netloc)
    req.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    out = req.body()
    try:
        pending = outgoing_handler.handle(req, None)
    except Err as e:
        raise failure_of(e.value, url)
    OutgoingBody.finish(out, None)
    with pending.subscribe() as ready:
        ready.block()
    got = pending.get()
    pending.__exit__(None, None, None)
    if got is None or isinstance(got, Err):
        raise Err(Failure_Retry(f"request to {url} got no response"))
    if isinstance(got.value, Err):
        raise failure_of(got.value.value, url)
    resp = got.value.value
    status = resp.status()
    with resp.headers() as fields:
        names = {k.lower(): v.decode(errors="replace") for k, v in fields.entries()}
    body = resp.consume()
    data = bytearray()
    with body.stream() as stream:
        while True:
            try:
                data += stream.blocking_read(64 * 1024)
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    break
                raise Err(Failure_Retry("the response body is over the job's size limit, or its connection failed"))
    IncomingBody.finish(body)
    resp.__exit__(None, None, None)
    return status, names, bytes(data)


class WitWorld(wit_world.WitWorld):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="python-fetch",
            version="0.2.0",
            description="Reads a JSON document over HTTP and summarises it (Python).",
            modes=["quiet", "verbose"],
            params=[
                ParamSpec(name="url", help="The document's URL (else the side file's config url)", kind=ParamType.TEXT, required=False, choices=[], default=None),
                ParamSpec(name="notify", help="A job type to queue a child of, told the outcome", kind=ParamType.TEXT, required=False, choices=[], default=None),
            ],
        )

    def run(self, job: Job) -> str:
        params = json.loads(job.params)
        url = params.get("url") or config.get("url")
        if not url:
            raise Err(Failure_Discard("no url: give the url parameter or config url"))
        headers = {"accept": "application/json"}
        token = config.secret("token")
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        host.progress(0, f"fetching {url}")
        for _ in range(6):
            if job.mode == "verbose":
                host.log(LogLevel.DEBUG, f"GET {url} with {headers}")
            status, got, body = http_get(url, headers)
            if 300 <= status < 400 and "location" in got:
                host.log(LogLevel.INFO, f"redirected to {got['location']}")
                url = got["location"]
                continue
            break
        else:
            raise Err(Failure_Discard("more than 5 redirects"))
        if status in (429, 503):
            secs = int(got["retry-after"]) if got.get("retry-after", "").strip().isdigit() else 60
            raise Err(Failure_RetryAfter(RetryLater(secs, f"{url} answered {status}: retry in {secs} s")))
        if status >= 400:
            raise Err(Failure_Retry(f"{url} answered {status}"))
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise Err(Failure_Discard(f"{url} did not answer JSON: {e}"))
        keys = len(doc) if isinstance(doc, dict) else 0
        host.set_result(json.dumps({"status": status, "bytes": len(body), "keys": keys}))
        if params.get("notify"):
            n = jobs.queue_job(params["notify"], json.dumps({"name": f"{url} answered {status}"}), ChildOptions(mode=None, delay_seconds=None, max_retry=None, retry_interval=None))
            host.log(LogLevel.INFO, f"queued child {n}: {params['notify']}")
        host.progress(100, "done")
        return f"fetched {url}: {len(body)} bytes, {keys} keys"
