#!/usr/bin/env python3
"""Cache-miss latency: verifies each key of KEYS_FILE once (none cached yet) through forward
auth (GET /auth) at RATE requests a second, spread over THREADS connections, and prints the
median, p99 and max in milliseconds (client-measured, so Python's own time is included).

    python3 benches/miss_latency.py HOST:PORT KEYS_FILE [RATE] [THREADS]
"""

import http.client
import statistics
import sys
import threading
import time


def main() -> None:
    addr, keys_file = sys.argv[1], sys.argv[2]
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 1000.0
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    host, port = addr.rsplit(":", 1)
    keys = [k.strip() for k in open(keys_file, encoding="ascii") if k.strip()]
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    start = time.perf_counter() + 0.2

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection(host, int(port))
        mine = keys[n::threads]
        for i, key in enumerate(mine):
            # Open loop: request i of this thread is due at its slot, whatever came before.
            due = start + (i * threads + n) / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            t0 = time.perf_counter()
            conn.request("GET", "/auth", headers={"Authorization": f"Bearer {key}"})
            response = conn.getresponse()
            response.read()
            # From when it was due (a late start counts against the server), or sent.
            took = (time.perf_counter() - min(t0, due)) * 1000
            with lock:
                latencies.append(took)
                if response.status != 200:
                    failures[0] += 1

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"requests {len(latencies)} not_200 {failures[0]} "
        f"median_ms {statistics.median(latencies):.3f} p99_ms {p99:.3f} max_ms {latencies[-1]:.3f}"
    )


if __name__ == "__main__":
    main()
