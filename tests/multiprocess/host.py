"""A Python host process for the multi-process test: starts a Herald node (or, with
HERALD_LISTEN=0, an emitter) on the Redis broker named by HERALD_REDIS_URL and
HERALD_REDIS_PREFIX, prints `ready <port>`, then obeys stdin (see README.md here)."""

import json
import os
import sys

import herald


def main() -> None:
    server = herald.Server(
        port=0,
        listen=os.environ.get("HERALD_LISTEN", "1") != "0",
        broker={"redis": {"url": os.environ["HERALD_REDIS_URL"], "prefix": os.environ["HERALD_REDIS_PREFIX"]}},
    )
    print(f"ready {server.stats()['port']}", flush=True)
    for line in sys.stdin:
        command, _, rest = line.strip().partition(" ")
        if command == "stop":
            break
        try:
            if command == "publish":
                channel, _, message = rest.partition(" ")
                server.publish(channel, json.loads(message))
            elif command == "broadcast":
                server.broadcast(json.loads(rest))
            else:
                raise ValueError(f"unknown command {command!r}")
            print("ok", flush=True)
        except Exception as err:  # reported to the test, which fails on it
            print(f"error {type(err).__name__}: {err}", flush=True)
    server.close(timeout=10)
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
