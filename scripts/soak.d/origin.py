#!/usr/bin/env python3
"""A small HTTP/1.1 origin for scripts/soak (Python stdlib only, asyncio).

    origin.py --name NAME [--port PORT] [--slow]

Listens on 127.0.0.1:PORT (0: any free port) and prints `listening PORT` on stdout once
bound. Keep-alive HTTP/1.1; request bodies (Content-Length or chunked) are read and counted.
Every request gets `200` with a short text body naming the origin, except:

  GET /__stats[?before=EPOCH]   counters as JSON (not counted); `before` limits the
                                arrival counts to requests that arrived before EPOCH

With --slow, request number k (from 0) is answered after DELAYS[k % 6] seconds, DELAYS being
2.0, 2.5, 3.5, 4.0, 4.5, 5.0: two in six answer within 3 s, four in six after it.
"""

import argparse
import asyncio
import bisect
import json
import signal
import sys
import time

DELAYS = (2.0, 2.5, 3.5, 4.0, 4.5, 5.0)
FAST_LIMIT = 3.0  # delays below this are "fast" in the counters


class Counters:
    def __init__(self):
        self.requests = 0
        self.body_bytes = 0
        self.incomplete = 0  # connections closed mid-request (head or body)
        self.connections = 0
        # --slow: arrival times (epoch seconds) of requests given a delay below / above FAST_LIMIT
        self.fast_arrivals = []
        self.slow_arrivals = []

    def as_json(self, before=None):
        def count(arrivals):
            return len(arrivals) if before is None else bisect.bisect_left(arrivals, before)

        return {
            "requests": self.requests,
            "body_bytes": self.body_bytes,
            "incomplete": self.incomplete,
            "connections": self.connections,
            "fast": count(self.fast_arrivals),
            "slow": count(self.slow_arrivals),
            "fast_total": len(self.fast_arrivals),
            "slow_total": len(self.slow_arrivals),
        }


def response(status, reason, body, keep_alive, content_type=b"text/plain"):
    head = (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
        % (
            status,
            reason,
            content_type,
            len(body),
            b"" if keep_alive else b"Connection: close\r\n",
        )
    )
    return head + body


async def read_body(reader, headers, counters):
    """Reads the request body; returns its length, or None when the peer went away."""
    te = headers.get(b"transfer-encoding", b"").lower()
    if b"chunked" in te:
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return total
            await reader.readexactly(size + 2)
            total += size
    length = int(headers.get(b"content-length", b"0") or b"0")
    remaining = length
    while remaining > 0:
        chunk = await reader.read(min(remaining, 65536))
        if not chunk:
            return None
        remaining -= len(chunk)
    return length


async def handle(reader, writer, name, slow, counters):
    counters.connections += 1
    try:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 300)
            except asyncio.IncompleteReadError as e:
                if e.partial:
                    counters.incomplete += 1
                return
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                return
            method, target, version = parts
            headers = {}
            for line in lines[1:]:
                if line:
                    key, _, value = line.partition(b":")
                    headers[key.strip().lower()] = value.strip()
            try:
                length = await read_body(reader, headers, counters)
            except (asyncio.IncompleteReadError, ValueError):
                length = None
            if length is None:
                counters.incomplete += 1
                return
            keep_alive = version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
            if method == b"GET" and target.split(b"?")[0] == b"/__stats":
                before = None
                if b"?before=" in target:
                    before = float(target.split(b"?before=", 1)[1])
                body = json.dumps(counters.as_json(before)).encode()
                writer.write(response(200, b"OK", body, keep_alive, b"application/json"))
                await writer.drain()
                if not keep_alive:
                    return
                continue
            k = counters.requests
            counters.requests += 1
            counters.body_bytes += length
            if slow:
                delay = DELAYS[k % len(DELAYS)]
                arrivals = counters.fast_arrivals if delay < FAST_LIMIT else counters.slow_arrivals
                arrivals.append(time.time())
                await asyncio.sleep(delay)
            body = b"%s %s %s %d\n" % (name.encode(), method, target, length)
            writer.write(response(200, b"OK", body, keep_alive))
            await writer.drain()
            if not keep_alive:
                return
    except (ConnectionError, asyncio.TimeoutError, asyncio.LimitOverrunError, ValueError, OSError):
        pass
    finally:
        writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--slow", action="store_true")
    args = parser.parse_args()
    counters = Counters()
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args.name, args.slow, counters),
        "127.0.0.1",
        args.port,
        reuse_address=True,
        backlog=1024,
        limit=65536,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    sys.exit(0)
