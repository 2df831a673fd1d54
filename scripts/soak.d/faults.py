"""Misbehaving clients for scripts/soak. Each function opens its connections to ADDR (the
proxy's listener on 127.0.0.1), does its harm, and returns a dict describing what it saw.
Every wait is bounded by a deadline."""

import selectors
import socket
import struct
import time

LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def _connect(addr, timeout=3.0):
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _reset(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    except OSError:
        pass
    s.close()


def _read_all(socks, deadline):
    """Reads every socket until EOF, a reset or the deadline. Returns, per socket, the bytes
    read, how it ended ('eof', 'reset' or 'open') and when (seconds since the call)."""
    start = time.monotonic()
    sel = selectors.DefaultSelector()
    out = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        out[s] = [b"", "open", None]
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, min(0.5, deadline - time.monotonic()))):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                out[s][1:] = ["reset", time.monotonic() - start]
                sel.unregister(s)
                continue
            if data:
                out[s][0] += data
            else:
                out[s][1:] = ["eof", time.monotonic() - start]
                sel.unregister(s)
    sel.close()
    return [tuple(out[s]) for s in socks]


def _status(data):
    """The status code of the first response in DATA, or None."""
    if data.startswith(b"HTTP/1."):
        try:
            return int(data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return None
    return None


def _tally(values):
    counts = {}
    for v in values:
        key = "no response" if v is None else str(v)
        counts[key] = counts.get(key, 0) + 1
    return counts


def reset_mid_body(addr, n=20, sent_bytes=10000, declared=100000):
    """N clients each send a POST head with Content-Length DECLARED and SENT_BYTES of the body,
    wait 50 ms (so the proxy has begun relaying to an origin), then reset (SO_LINGER 0)."""
    done = 0
    failed_connect = 0
    for i in range(n):
        try:
            s = _connect(addr)
        except OSError:
            failed_connect += 1
            continue
        try:
            s.sendall(
                b"POST /upload/%d HTTP/1.1\r\nHost: soak\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n" % (i, declared)
            )
            s.sendall(b"x" * sent_bytes)
            time.sleep(0.05)
            done += 1
        except OSError:
            pass
        finally:
            _reset(s)
    return {"clients": n, "reset": done, "connect_failed": failed_connect}


def half_close_after_request(addr, n=20, wait=10.0):
    """N clients each send a whole GET, shut down their write side and read the answer until
    EOF (at most WAIT seconds)."""
    socks = []
    failed_connect = 0
    for i in range(n):
        try:
            s = _connect(addr)
            s.sendall(b"GET /half-close/%d HTTP/1.1\r\nHost: soak\r\n\r\n" % i)
            s.shutdown(socket.SHUT_WR)
            socks.append(s)
        except OSError:
            failed_connect += 1
    results = _read_all(socks, time.monotonic() + wait)
    for s in socks:
        s.close()
    return {
        "clients": n,
        "connect_failed": failed_connect,
        "status": _tally(_status(d) for d, _, _ in results),
        "ended": _tally(e for _, e, _ in results),
        "max_end_s": round(max((t for _, _, t in results if t is not None), default=0.0), 3),
    }


def half_head(addr, n=20, wait=15.0):
    """N clients each send half a request head, shut down their write side and wait (at most
    WAIT seconds) for the proxy to answer or close."""
    socks = []
    failed_connect = 0
    for _ in range(n):
        try:
            s = _connect(addr)
            s.sendall(b"GET /half-head HTTP/1.1\r\nHost: so")
            s.shutdown(socket.SHUT_WR)
            socks.append(s)
        except OSError:
            failed_connect += 1
    results = _read_all(socks, time.monotonic() + wait)
    for s in socks:
        s.close()
    return {
        "clients": n,
        "connect_failed": failed_connect,
        "status": _tally(_status(d) for d, _, _ in results),
        "ended": _tally(e for _, e, _ in results),
        "max_end_s": round(max((t for _, _, t in results if t is not None), default=0.0), 3),
    }


def idle_abandoned(addr, silent=50, after_request=50, hold=25.0):
    """SILENT connections that send nothing, and AFTER_REQUEST connections that send one
    request, read its answer and then send nothing more. None of them is ever closed by the
    client until HOLD seconds have passed: the proxy's idle timeout should close them first.
    Whatever is still open after HOLD is reset."""
    quiet, used = [], []
    failed_connect = 0
    for _ in range(silent):
        try:
            quiet.append(_connect(addr))
        except OSError:
            failed_connect += 1
    answered = 0
    for i in range(after_request):
        try:
            s = _connect(addr)
            s.sendall(b"GET /idle/%d HTTP/1.1\r\nHost: soak\r\n\r\n" % i)
            s.settimeout(5.0)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            # The body is a short line; its length is in Content-Length.
            head, _, rest = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            while len(rest) < length:
                chunk = s.recv(4096)
                if not chunk:
                    break
                rest += chunk
            if _status(data) == 200:
                answered += 1
            used.append(s)
        except OSError:
            failed_connect += 1
    results = _read_all(quiet + used, time.monotonic() + hold)
    r_quiet, r_used = results[: len(quiet)], results[len(quiet) :]
    left_open = 0
    for s, (_, ended, _) in zip(quiet + used, r_quiet + r_used):
        if ended == "open":
            left_open += 1
            _reset(s)
        else:
            s.close()

    def closes(results):
        times = [t for _, e, t in results if e != "open"]
        return {
            "closed_by_proxy": len(times),
            "min_s": round(min(times), 2) if times else None,
            "max_s": round(max(times), 2) if times else None,
        }

    return {
        "silent": silent,
        "after_request": after_request,
        "answered": answered,
        "connect_failed": failed_connect,
        "silent_closed": closes(r_quiet),
        "after_request_closed": closes(r_used),
        "left_open_then_reset": left_open,
    }
