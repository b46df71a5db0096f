#!/usr/bin/env python3
"""What a systemd .socket unit does, in small: hold a listening TCP socket, and whenever a
connection waits on it and no service runs, start the service with the socket as fd 3
(LISTEN_FDS=1, LISTEN_PID=its pid). Connections queue in the backlog meanwhile.
Usage: socket-holder.py PORT COMMAND... ; prints "listening" then one line per start."""
import os, select, socket, subprocess, sys

port = int(sys.argv[1])
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen(64)
print("listening", flush=True)
starts = 0
while True:
    select.select([sock], [], [])
    starts += 1
    print(f"start {starts}", flush=True)
    child = subprocess.Popen(
        ["/bin/sh", "-c", 'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@"', "sh", *sys.argv[2:]],
        pass_fds=[3] if sock.fileno() == 3 else [], stdin=subprocess.DEVNULL,
        preexec_fn=(lambda: os.dup2(sock.fileno(), 3)) if sock.fileno() != 3 else None)
    code = child.wait()
    print(f"exit {code}", flush=True)
