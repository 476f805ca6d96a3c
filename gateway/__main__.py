"""`python -m gateway`: one region proxy process (what `ghostgate up` starts per region)."""

from __future__ import annotations

import argparse
import sys

from gateway import config
from gateway.app import create_app
from gateway.logs import configure_logging
from gateway.server import run, serve_until_signalled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    config.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = config.load(args)
    except config.ConfigError as exc:
        print(f"ghostgate: {exc}", file=sys.stderr)
        return 2
    if not settings.backends:
        print("ghostgate: no backend given (--backend URL)", file=sys.stderr)
        return 2
    if not settings.auth.public_key_files and not settings.auth.jwks_url:
        print(
            "ghostgate: no token verification key (--state-dir, --public-key or --jwks)",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.log_level)
    app, services = create_app(settings)

    def drain() -> None:
        services.draining = True

    run(serve_until_signalled(app, settings, drain), settings.server.use_uvloop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
