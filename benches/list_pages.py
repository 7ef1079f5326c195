#!/usr/bin/env python3
"""ListKeys pages of one account through the HTTP API: PAGES pages of 100 (following the page
tokens from the first), each timed; then the walk goes on to the pages after them (from the
start again at the end) for 5 seconds while other threads create keys in that account at up to
CREATES a second. Prints the median and max page time of each pass (and the second's 99th
percentile), the pages of the second and the keys created (milliseconds; client-measured, so
Python's own time is included).

    KEYWARD_KEY=<root key> python3 benches/list_pages.py HOST:PORT ACCOUNT [PAGES] [CREATES]
"""

import http.client
import json
import os
import statistics
import sys
import threading
import time


def pages(addr: str, key: str, account: str, count: int, token: str = "") -> tuple[list[float], str]:
    """COUNT pages from TOKEN on (from the start again at the end): their times, and the token
    after the last."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port))
    took = []
    for _ in range(count):
        t0 = time.perf_counter()
        conn.request(
            "GET",
            f"/v1/api-keys?accountId={account}&pageSize=100&pageToken={token}",
            headers={"Authorization": f"Bearer {key}"},
        )
        response = conn.getresponse()
        body = response.read()
        took.append((time.perf_counter() - t0) * 1000)
        if response.status != 200:
            sys.exit(f"ListKeys answered {response.status} (page {len(took)}, token {token!r}): {body[:300]!r}")
        token = json.loads(body).get("nextPageToken") or ""
    return took, token


def main() -> None:
    # The key from the environment: a command line is visible to every process.
    key = os.environ["KEYWARD_KEY"]
    addr, account = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 200.0
    quiet, token = pages(addr, key, account, count)
    stop = threading.Event()
    created = [0]
    errors: list[str] = []
    lock = threading.Lock()
    threads = 4

    def creator(n: int) -> None:
        host, port = addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port))
        start, i = time.perf_counter(), 0
        while not stop.is_set():
            pause = start + (i * threads + n) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            body = json.dumps(
                {"accountId": account, "name": "created meanwhile", "scopes": ["videos:read"]}
            )
            conn.request(
                "POST",
                "/v1/api-keys",
                body=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read()
            if response.status != 201:
                errors.append(f"create answered {response.status}")
                return
            with lock:
                created[0] += 1
            i += 1

    # Daemons: a failed page ends the run without waiting for them.
    pool = [threading.Thread(target=creator, args=(n,), daemon=True) for n in range(threads)]
    for t in pool:
        t.start()
    while created[0] < 10 and not errors:  # the creates are under way before the first page
        time.sleep(0.01)
    busy: list[float] = []
    until = time.perf_counter() + 5
    while time.perf_counter() < until and not errors:
        took, token = pages(addr, key, account, count, token)
        busy += took
    stop.set()
    for t in pool:
        t.join()
    if errors:
        sys.exit(errors[0])
    print(
        f"page_ms {statistics.median(quiet):.2f} page_max_ms {max(quiet):.2f} "
        f"creating_page_ms {statistics.median(busy):.2f} "
        f"creating_page_p99_ms {statistics.quantiles(busy, n=100)[98]:.2f} "
        f"creating_page_max_ms {max(busy):.2f} "
        f"creating_pages {len(busy)} created {created[0]}"
    )


if __name__ == "__main__":
    main()
