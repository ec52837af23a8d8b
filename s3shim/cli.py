"""Command line entry point: parse the configuration once, then serve."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import config as config_mod
from . import logs
from .server import serve


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = config_mod.load(argv)
    except config_mod.ConfigError as exc:
        print(f"s3shim: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(cfg.log_level, cfg.log_format)
    return serve(cfg)


if __name__ == "__main__":
    sys.exit(main())
