#!/usr/bin/python3
"""Runs one command and measures it with everything it starts: `reap.py [--mark REGEX] [--no-sum] -- CMD ARGS...`.

The peers' processes are short and some of them fork helpers that outlive their parent, so
/proc cannot be read after the fact. This wrapper makes itself a child subreaper (prctl
PR_SET_CHILD_SUBREAPER), so that every descendant, orphaned or not, is reaped either by its own
parent or by this process; the kernel then folds each reaped process's CPU time, peak RSS and I/O
counters into its reaper's, up to this one:

- cpu: getrusage(RUSAGE_CHILDREN) user + system of every descendant;
- maxrss: the same call's ru_maxrss, the largest single descendant's peak RSS (VmHWM);
- write_bytes: /proc/self/io, which counts the reaped descendants' bytes sent to the block layer
  (dirtied page cache included, attributed to the process that dirtied it);
- peak_sum: every 10 ms the live descendants' VmHWM summed; the largest such sum (the processes
  that were alive at the same time, each at its own peak so far).

  --no-sum leaves the sampling out (peak_sum is then maxrss), for a caller that samples the
  processes alive together itself: each sample reads all of /proc.

- mark_s: with --mark, when the first line of the command's output (stdout and stderr) matching
  REGEX appeared: the moment a tool says it is done, where its process lingers after that.

Prints one JSON line on stdout; the command's own output goes to stderr. Exits with the
command's exit status.
"""
import ctypes
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
SAMPLE_S = 0.01


def children_of(root):
    """PIDs of every live descendant of `root`, from /proc's parent links."""
    parent = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', 'rb') as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields follow the last ')'
        fields = stat[stat.rindex(b')') + 2:].split()
        parent[int(entry)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier and pid not in found}
        found |= frontier
    return found


def hwm_kib(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0  # gone, or a zombie: its peak is in the rusage now


def io_counters():
    with open('/proc/self/io') as f:
        return {k: int(v) for k, v in (line.split(': ') for line in f)}


def main():
    argv = sys.argv[1:]
    mark = None
    summing = True
    while argv[:1] in (['--mark'], ['--no-sum']):
        if argv[0] == '--mark':
            mark, argv = re.compile(argv[1].encode()), argv[2:]
        else:
            summing, argv = False, argv[1:]
    if argv[:1] == ['--']:
        argv = argv[1:]
    if not argv:
        sys.exit('usage: reap.py [--mark REGEX] [--no-sum] -- CMD ARGS...')
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f'prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}')
    me = os.getpid()
    peak_sum = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak_sum[0] = max(peak_sum[0], sum(hwm_kib(pid) for pid in children_of(me)))
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    marked = [None]

    def relay():
        for line in child.stdout:
            if marked[0] is None and mark is not None and mark.search(line):
                marked[0] = time.monotonic()
            sys.stderr.buffer.write(line)
        sys.stderr.flush()

    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()
    if summing:
        sampler.start()
    status = None
    end = None
    # reap everything, the command and whatever it left behind; the wall time ends with the
    # command itself (what a caller waits for)
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        if pid == child.pid:
            end = time.monotonic()
            status = os.waitstatus_to_exitcode(wait_status)
    done.set()
    if summing:
        sampler.join()
    relay_thread.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    io = io_counters()
    print(json.dumps({
        'exit': status,
        'wall_s': end - t0,
        'mark_s': None if marked[0] is None else marked[0] - t0,
        'cpu_s': usage.ru_utime + usage.ru_stime,
        'maxrss_kib': usage.ru_maxrss,
        'peak_sum_kib': max(peak_sum[0], usage.ru_maxrss),
        'write_bytes': io['write_bytes'],
        'cancelled_write_bytes': io['cancelled_write_bytes'],
    }))
    sys.exit(status if status is not None and status >= 0 else 1)


if __name__ == '__main__':
    main()
