"""Benchmark host: Herald embedded in Python through the ctypes binding (bindings/python).

Uses the installed ``herald`` package if there is one, else the source checkout
(bindings/python/src), which finds target/release/libherald.so by itself.

Prints "READY <port>", then obeys line commands on stdin (see loadgen/src/host.rs):
  push <M> <rate> <size>  -> PUSHED <M> <elapsed_ns> <retries>
  cost <K> <size>         -> COST <K> <elapsed_ns> <errors> <calling thread's CPU ns>
  quit
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..", "..", "bindings", "python", "src")
if os.path.isdir(SRC):
    sys.path.insert(0, os.path.abspath(SRC))

import herald  # noqa: E402

SESSION = os.environ.get("BENCH_SESSION", "bench")
QUEUE = int(os.environ.get("BENCH_CLIENT_QUEUE", "4096"))


def payload(t, i, size):
    head = '{"t":%d,"i":%d,"pad":"' % (t, i)
    return head + "x" * max(0, size - len(head) - 2) + '"}'


def push(server, m, rate, size):
    retries = 0
    notify = server.notify_ai_progress
    start = time.monotonic()
    t0 = time.perf_counter_ns()
    for i in range(m):
        if rate > 0:
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        text = payload(time.time_ns() // 1000, i, size)
        while True:
            try:
                notify(SESSION, text)
                break
            except herald.QueueFullError:
                retries += 1
                time.sleep(0.0001)
    return time.perf_counter_ns() - t0, retries


def cost(server, k, size):
    text = payload(time.time_ns() // 1000, 0, size)
    notify = server.notify_ai_progress
    errors = 0
    c0 = time.thread_time_ns()
    t0 = time.perf_counter_ns()
    for _ in range(k):
        try:
            notify(SESSION, text)
        except herald.HeraldError:
            errors += 1
    return time.perf_counter_ns() - t0, errors, time.thread_time_ns() - c0


def main():
    server = herald.Server(port=0, client_queue_size=QUEUE)
    print("READY %d" % server.port, flush=True)
    for line in sys.stdin:
        p = line.split()
        if len(p) == 4 and p[0] == "push":
            ns, retries = push(server, int(p[1]), float(p[2]), int(p[3]))
            print("PUSHED %s %d %d" % (p[1], ns, retries), flush=True)
        elif len(p) == 3 and p[0] == "cost":
            ns, errors, cpu = cost(server, int(p[1]), int(p[2]))
            print("COST %s %d %d %d" % (p[1], ns, errors, cpu), flush=True)
        elif p and p[0] == "quit":
            break
    server.close(timeout=2.0)


if __name__ == "__main__":
    main()
