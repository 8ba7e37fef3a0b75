"""Run the router: ``python -m mainsail.serving.router --settings FILE [--host H] [--port P]``.

By default on the router's lean HTTP/1.1 server (:mod:`mainsail.serving.router.server`);
``--server uvicorn`` serves the same ASGI app with uvicorn (httptools + uvloop) instead.

The admin token is read from the environment variable named by ``router.token_env`` in the
settings file; the admin API stays disabled while it is unset.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pydantic import ValidationError

SWITCH_INTERVAL_S = 0.0005
"""How long another thread may hold the GIL while the serving loop waits for it (Python's
default is 5 ms). The router's other threads are its feedback writer and admin calls
(`asyncio.to_thread`): the writer's insert costs about 12 us of CPU per recorded request
(4-5 ms per 0.2 s flush at 1,800 req/s), a little over half of it Python (SQLAlchemy's
parameters) that holds the GIL, and with the default interval a request arriving meanwhile
waited up to 5 ms. In a probe (a uvloop loop taking 1,800 timed arrivals per second while that
writer ran) the loop's lag p99 was 1.3 ms with the default and 0.7 ms with 0.5 ms, against
0.6 ms without the writer."""


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the router and serve it with uvicorn until stopped."""
    parser = argparse.ArgumentParser(prog="python -m mainsail.serving.router")
    parser.add_argument("--settings", required=True, type=Path, help="router settings JSON")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--server",
        choices=["lean", "uvicorn"],
        default="lean",
        help="lean: the router's own HTTP/1.1 server (less CPU per request); uvicorn: the "
        "router as a plain ASGI app under uvicorn (httptools + uvloop)",
    )
    args = parser.parse_args(argv)

    from mainsail.serving.router.app import RouterSettings, create_router

    try:
        settings = RouterSettings.model_validate(json.loads(args.settings.read_text()))
    except (OSError, ValueError, ValidationError) as err:
        print(f"router: cannot use settings {args.settings}: {err}", file=sys.stderr)
        return 2
    from mainsail.core import telemetry

    telemetry.setup("mainsail-router")
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    token = os.environ.get(settings.router.token_env) or None
    router = create_router(settings, token)
    if args.server == "lean":
        import logging

        from mainsail.serving.router.server import run

        logging.basicConfig(
            level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s"
        )
        telemetry.settle(always=True)  # the loaded heap out of the full collections
        run(router, args.host, args.port)
        return 0

    import uvicorn

    telemetry.settle(always=True)

    uvicorn.run(
        router,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=args.log_level,
        lifespan="on",
        # The router is the local edge: no proxy in front whose headers to trust, and two
        # fewer headers to write per answer.
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
