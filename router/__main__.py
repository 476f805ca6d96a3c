"""`python -m router`: the geo-router (what `ghostgate up --multi-region` starts on :8080).

python -m router --port 8080 --state-dir DIR [--region NAME=URL ...]
                 [--config TOML] [--redis URL] [--wan-latency]
"""

from __future__ import annotations

import argparse
import sys

from gateway.logs import configure_logging
from gateway.server import serve_process
from gateway.settings import GatewaySettings, ServerSettings
from router import config
from router.app import create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m router", description=__doc__)
    config.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = config.load(args)
    except config.ConfigError as exc:
        print(f"ghostgate router: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    app, services = create_app(settings)
    # The region's Hypercorn set-up fits the router too: editor connections
    # that live for hours, and a drain on SIGTERM.
    server = ServerSettings(host=settings.host, port=settings.port, use_uvloop=settings.use_uvloop)
    serving = GatewaySettings(region="router", server=server, log_level=settings.log_level)
    serve_process(app, serving, services)
    return 0


if __name__ == "__main__":
    sys.exit(main())
