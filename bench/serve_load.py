#!/usr/bin/env python3
"""Load on `cojobs serve` (issue 12's figures; a benchmark, not a test).

N clients each poll the jobs list over one keep-alive HTTP/1.1 connection
as fast as the server answers, and (with --sse) each also holds one
Server-Sent Events stream open, as a dashboard page does. Prints the
requests per second served, and latency p50/p99.

    bench/serve_load.py --addr 127.0.0.1:8080 --clients 20 --seconds 20 [--sse] [--token T]

SIGTERM ends it early, with the figures so far.

Standard library only (asyncio), so it runs wherever Python 3 does.
"""
import argparse
import asyncio
import signal
import time


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise RuntimeError("no content-length: %r" % head)
    await reader.readexactly(length)
    return status


async def poller(args, path, stop, latencies, errors):
    reader, writer = await asyncio.open_connection(*args.hostport)
    auth = "Authorization: Bearer %s\r\n" % args.token if args.token else ""
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path, args.addr, auth)).encode()
    while time.monotonic() < stop[0]:
        t = time.monotonic()
        writer.write(req)
        status = await read_response(reader)
        if status != 200:
            errors.append(status)
        latencies.append(time.monotonic() - t)
    writer.close()


async def sse(args, stop, events):
    reader, writer = await asyncio.open_connection(*args.hostport)
    auth = "Authorization: Bearer %s\r\n" % args.token if args.token else ""
    writer.write(("GET /events HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (args.addr, auth)).encode())
    while time.monotonic() < stop[0]:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), timeout=1.0)
        except asyncio.TimeoutError:
            continue
        if not chunk:
            break
        events[0] += chunk.count(b"event: update")
    writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", default="127.0.0.1:8080")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--path", default="/api/v1/jobs?limit=50")
    p.add_argument("--token")
    p.add_argument("--sse", action="store_true")
    args = p.parse_args()
    host, _, port = args.addr.rpartition(":")
    args.hostport = (host, int(port))
    # SIGTERM ends the run early (the clients finish their request), so a
    # script can load the server for exactly as long as something else runs.
    stop = [time.monotonic() + args.seconds]
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: stop.__setitem__(0, 0))
    latencies, errors, events = [], [], [0]
    tasks = [poller(args, args.path, stop, latencies, errors) for _ in range(args.clients)]
    if args.sse:
        tasks += [sse(args, stop, events) for _ in range(args.clients)]
    start = time.monotonic()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0
    print("%d requests in %.1f s: %.0f req/s; p50 %.1f ms, p99 %.1f ms; %d non-200; %d SSE updates"
          % (len(latencies), elapsed, len(latencies) / elapsed, pick(0.5), pick(0.99), len(errors), events[0]))


asyncio.run(main())
