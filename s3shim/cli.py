"""Command line entry point: ``s3shim [options]`` serves; ``s3shim verify s3://...`` scrubs;
``s3shim reencrypt s3://...`` puts objects under the current master key."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import __version__, logs
from . import config as config_mod


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["verify"]:
        from . import scrub

        return scrub.main(args[1:])
    if args[:1] == ["reencrypt"]:
        from . import reencrypt

        return reencrypt.main(args[1:])
    if "--version" in args:  # before the settings: it needs no upstream URL or keys
        print(f"s3shim {__version__}")
        return 0
    try:
        cfg = config_mod.load(args)
    except config_mod.ConfigError as exc:
        print(f"s3shim: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(cfg.log_level, cfg.log_format)
    from .server import serve  # after the settings parsed: --help stays quick

    return serve(cfg)


if __name__ == "__main__":
    sys.exit(main())
