#!/usr/bin/env python3
"""Per-connection memory of a running intercomd: start the given binary on 127.0.0.1 with a
fresh state directory, hold N idle TLS connections (handshake done, nothing sent), read the
server's RssAnon and VmRSS; then, in a second server, N registered WebSockets. Prints the
figures before and after and the difference divided by N.

    python3 benches/conn_memory.py target/release/intercomd [N] [--tls12]

N defaults to 64 (the default table size). --tls12 limits the client to TLS 1.2.
"""
import base64, json, os, re, socket, ssl, subprocess, sys, tempfile, time


def status(pid):
    text = open(f"/proc/{pid}/status").read()
    return {k: int(re.search(rf"^{k}:\s+(\d+)", text, re.M).group(1)) for k in ("VmRSS", "RssAnon")}


def start(binary, state, n):
    # All N come from one address and stay unregistered (the TLS half): allow them.
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--state-dir", state,
                          "--max-per-ip", str(n), "--turn", "off", "--log-level", "info"],
                         stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        m = re.search(r"listening on (\S+):(\d+)", line)
        if m:
            return p, int(m.group(2))
    raise SystemExit("server did not start")


def tls(port, ctx):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    return s


def frame(text):
    data = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bytes([0x81, 0x80 | len(data)]) + mask + masked


def websocket(port, ctx, name):
    s = tls(port, ctx)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    s.sendall(frame(json.dumps({"type": "register", "name": name})))
    reply = s.recv(4096)
    assert b"registered" in reply, reply
    return s


def measure(binary, n, what, tls12):
    with tempfile.TemporaryDirectory() as state:
        p, port = start(binary, state, n)
        try:
            ctx = ssl.create_default_context(cafile=os.path.join(state, "ca.crt"))
            if tls12:
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            time.sleep(0.5)
            before = status(p.pid)
            if what == "tls":
                held = [tls(port, ctx) for _ in range(n)]
            else:
                held = [websocket(port, ctx, f"p{i}") for i in range(n)]
            time.sleep(1.0)
            after = status(p.pid)
            per = {k: (after[k] - before[k]) / n for k in after}
            version = held[0].version()
            print(f"{what:9} {version} N={n}: RssAnon {before['RssAnon']} -> {after['RssAnon']} kB "
                  f"({per['RssAnon']:.1f} kB each), VmRSS {before['VmRSS']} -> {after['VmRSS']} kB "
                  f"({per['VmRSS']:.1f} kB each)")
            for s in held:
                s.close()
        finally:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--tls12"]
    tls12 = "--tls12" in sys.argv
    binary = args[0]
    n = int(args[1]) if len(args) > 1 else 64
    measure(binary, n, "tls", tls12)
    measure(binary, n, "websocket", tls12)
