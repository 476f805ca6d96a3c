"""`python -m gateway`: one region proxy process (what `ghostgate up` starts per region)."""

from __future__ import annotations

import argparse
import sys

from gateway import config
from gateway.app import create_app
from gateway.logs import configure_logging
from gateway.server import serve_process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    config.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = config.servable(config.load(args))
    except config.ConfigError as exc:
        print(f"ghostgate: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    app, services = create_app(settings)
    serve_process(app, settings, services)
    return 0


if __name__ == "__main__":
    sys.exit(main())
