"""The longer fuzz run: tests/unit/test_fuzz.py's targets with many more examples.

    .venv/bin/python bench/fuzz.py --examples 20000

Each target (aws-chunked decoder, Complete XML rewrite, Authorization header parser,
presigned/SigV2 query parsers, POST form parser, POST policy decoder) gets ``--examples``
hypothesis examples; any input that raises anything but an S3 error fails the run. Prints the
examples per target, the wall and CPU time, and pytest's summary; exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--examples", type=int, default=20000, help="examples per target")
    args = p.parse_args()
    env = {**os.environ, "S3SHIM_FUZZ_EXAMPLES": str(args.examples)}
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--hypothesis-show-statistics",
            str(ROOT / "tests/unit/test_fuzz.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    print(f"examples per target: {args.examples}")
    print(f"wall: {wall:.0f} s, CPU: {cpu.ru_utime + cpu.ru_stime:.0f} s")
    print(f"pytest: {summary}")
    if proc.returncode:
        print(proc.stdout[-5000:])
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
