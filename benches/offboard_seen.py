#!/usr/bin/env python3
"""How soon every replica refuses an offboarded account's keys: verifies each key of KEYS_FILE
on every replica through forward auth (GET /auth, so each replica has them cached, as a busy
gateway's would), runs COMMAND (the offboarding, e.g. `keyward accounts offboard ACCOUNT`),
then asks every replica (a thread each) for one of the keys until it refuses it, then for the
others, again while any is accepted. Prints the call's time and, after its answer, when the
last replica refused (milliseconds; client-measured, so Python's own time is included).

    python3 benches/offboard_seen.py HOST:PORT[,HOST:PORT...] KEYS_FILE -- COMMAND...
"""

import http.client
import subprocess
import sys
import threading
import time


def status(conn: http.client.HTTPConnection, key: str) -> int:
    try:
        return ask(conn, key)
    except (http.client.RemoteDisconnected, ConnectionError):
        # The server closes a connection left idle longer than its header-read timeout, as
        # these are while a long offboarding runs; the next request opens a new one.
        conn.close()
        return ask(conn, key)


def ask(conn: http.client.HTTPConnection, key: str) -> int:
    conn.request("GET", "/auth", headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    response.read()
    return response.status


def main() -> None:
    addrs, keys_file = sys.argv[1].split(","), sys.argv[2]
    command = sys.argv[sys.argv.index("--") + 1 :]
    keys = [k.strip() for k in open(keys_file, encoding="ascii") if k.strip()]
    conns = []
    for addr in addrs:
        host, port = addr.rsplit(":", 1)
        conns.append(http.client.HTTPConnection(host, int(port)))
    for conn in conns:
        for key in keys:
            if status(conn, key) != 200:
                sys.exit(f"{conn.host}:{conn.port} does not accept a key before offboarding")
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    answered = time.perf_counter()
    worst = [0.0] * len(conns)
    late: list[str] = []

    def watch(n: int) -> None:
        # One key asked over and over until refused: when the replica dropped the account's
        # keys (it drops them together). Then every key once; any still accepted is asked
        # again round after round, and the replica's time is when it refused the last.
        while status(conns[n], keys[0]) == 200:
            if time.perf_counter() - answered > 30:
                late.append(f"replica {n} still accepts a key after 30 s")
                return
        worst[n] = (time.perf_counter() - answered) * 1000
        waiting = [key for key in keys[1:] if status(conns[n], key) == 200]
        while waiting:
            if time.perf_counter() - answered > 30:
                late.append(f"{len(waiting)} keys still accepted by replica {n} after 30 s")
                return
            waiting = [key for key in waiting if status(conns[n], key) == 200]
            worst[n] = (time.perf_counter() - answered) * 1000

    pool = [threading.Thread(target=watch, args=(n,)) for n in range(len(conns))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if late:
        sys.exit(late[0])
    print(
        f"offboard_ms {(answered - t0) * 1000:.0f} all_refused_after_ms {max(worst):.1f} "
        f"replicas {len(conns)} keys {len(keys)} per_replica_ms "
        + ",".join(f"{w:.1f}" for w in worst)
    )


if __name__ == "__main__":
    main()
