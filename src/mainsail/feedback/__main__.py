"""``python -m mainsail.feedback wait URL [--timeout S]``: wait until the feedback store answers.

The gateway's init container on a cluster runs it before the gateway starts, so that a gateway
whose Postgres is still initialising waits (one log line per try) instead of crash-looping. The
password comes from the environment (libpq's PGPASSWORD), never from the command line. Exit 0
when the store answers, 1 after the timeout, 2 on a bad argument.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mainsail.feedback")
    sub = parser.add_subparsers(dest="command", required=True)
    wait = sub.add_parser("wait", help="wait until the feedback store answers")
    wait.add_argument("url", help="SQLAlchemy URL of the store (no password: PGPASSWORD)")
    wait.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    wait.add_argument("--every", type=float, default=2.0, help="seconds between tries")
    args = parser.parse_args(argv)

    import sqlalchemy as sa

    from mainsail.feedback.store import StoreUnavailableError, wait_for_store

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        wait_for_store(args.url, args.timeout, every_s=args.every, log=log)
    except sa.exc.ArgumentError as err:
        log(f"not a feedback store URL: {err}")
        return 2
    except StoreUnavailableError as err:
        log(str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
