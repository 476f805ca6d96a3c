"""`python -m router`: the geo-router (what `ghostgate up --multi-region` starts on :8080).

python -m router --port 8080 --state-dir DIR [--region NAME=URL ...]
                 [--config TOML] [--redis URL] [--wan-latency]
                 [--operations-port PORT [--operations-host HOST]]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from gateway.config import check_server
from gateway.logs import configure_logging
from gateway.server import serve_process
from gateway.settings import GatewaySettings, ServerSettings
from router import config
from router.app import create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m router", description=__doc__)
    config.add_arguments(parser)
    add_operations_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = config.load(args)
        # The region's Hypercorn set-up fits the router too: editor connections
        # that live for hours, and a drain on SIGTERM.
        server = ServerSettings(
            host=settings.host, port=settings.port, use_uvloop=settings.use_uvloop
        )
        server = check_server(
            dataclasses.replace(
                server,
                operations_port=args.operations_port or 0,
                operations_host=args.operations_host or server.operations_host,
            )
        )
    except config.ConfigError as exc:
        print(f"ghostgate router: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    app, services = create_app(settings)
    serving = GatewaySettings(region="router", server=server, log_level=settings.log_level)
    serve_process(app, serving, services)
    return 0


def add_operations_arguments(parser: argparse.ArgumentParser) -> None:
    """The operations port, as a region has it (gateway/operations.py)."""
    parser.add_argument(
        "--operations-port",
        type=int,
        metavar="PORT",
        help="serve /healthz, /readyz (in full) and /metrics here, not on --port (default: none)",
    )
    parser.add_argument(
        "--operations-host", help="the operations port's address (default 127.0.0.1)"
    )


if __name__ == "__main__":
    sys.exit(main())
