#!/usr/bin/env python3
"""Writes an import file of N keys issued "elsewhere" (foreign prefix sk_live_), for
`keyward keys import` and the scale benchmark (docs/benchmarks.md).

    python3 benches/import_file.py N OUT.jsonl [--per-account 50] [--account NAME:COUNT]...
        [--secrets FILE K] [--secrets-of ACCOUNT FILE K]

The first keys fill the --account accounts in order (COUNT keys each); the rest belong to
accounts of --per-account keys each (`acct_0`, `acct_1`, …). --secrets keeps the raw text of K keys spread over the file
(one per line) so a benchmark can verify them; --secrets-of keeps the first K of one account's
keys the same way; every other raw key is thrown away.
A server reading these keys needs `foreign_key_prefixes = ["sk_live_"]`.
"""

import argparse
import hashlib
import json
import secrets
import string

ALPHABET = string.ascii_letters + string.digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("out")
    parser.add_argument("--per-account", type=int, default=50)
    parser.add_argument("--account", action="append", default=[])
    parser.add_argument("--secrets", nargs=2, metavar=("FILE", "K"))
    parser.add_argument("--secrets-of", nargs=3, metavar=("ACCOUNT", "FILE", "K"))
    args = parser.parse_args()
    named = []
    for spec in args.account:
        name, count = spec.rsplit(":", 1)
        named.append((name, int(count)))
    keep_every = 0
    kept = []
    kept_of: list[str] = []
    of_account, of_count = None, 0
    if args.secrets_of:
        of_account, of_count = args.secrets_of[0], int(args.secrets_of[2])
    if args.secrets:
        keep_every = max(1, args.n // int(args.secrets[1]))
    # A random stem per file and a counter make every key distinct and cheap to make; the
    # stem's 128 bits keep the raw keys unguessable.
    stem = "".join(secrets.choice(ALPHABET) for _ in range(22))
    with open(args.out, "w", encoding="ascii") as out:
        for i in range(args.n):
            raw = f"sk_live_{stem}{i:010d}"
            if keep_every and i % keep_every == 0:
                kept.append(raw)
            account, first = None, 0
            for name, count in named:
                if i < first + count:
                    account = name
                    break
                first += count
            if account is None:
                account = f"acct_{(i - first) // args.per_account}"
            if account == of_account and len(kept_of) < of_count:
                kept_of.append(raw)
            out.write(
                json.dumps(
                    {
                        "sha256": hashlib.sha256(raw.encode()).hexdigest(),
                        "prefix": raw[:12],
                        "account_id": account,
                        "name": f"key {i}",
                        "environment": "live",
                        "scopes": ["videos:read"],
                    },
                    separators=(",", ":"),
                )
                + "\n"
            )
    if args.secrets:
        with open(args.secrets[0], "w", encoding="ascii") as out:
            out.write("".join(k + "\n" for k in kept))
    if args.secrets_of:
        with open(args.secrets_of[1], "w", encoding="ascii") as out:
            out.write("".join(k + "\n" for k in kept_of))


if __name__ == "__main__":
    main()
