"""Who owns each µs of a small request: bench/small.py's whole-request CPU split into the
framework floor, s3shim's pure steps and the rest, per operation, in the run that measured it.

* ``floor``: bench/floor.py's ``relay-lean`` server in the same run (aiohttp's low-level
  server relaying a GET through ``s3shim.upstream``: accepting, parsing, one store round trip,
  answering; no verification, plan, re-signing or log line). Measured for GET only and
  charged to every operation: a HEAD's floor is a little lower, a PUT's a little higher.
* ``pure``: bench/perrequest.py's steps (head, classify, auth, plan, whole, sign, respond,
  record) for the same request, timed in this process in a tight loop, so warmer caches than
  the server's: the rest absorbs the difference.
* ``rest``: what is left of s3shim's measured CPU per request: the glue in proxy.py and
  listener.py, aiohttp's higher layers as s3shim uses them, cache misses the tight loop hides.

Targets (issue: small requests at most 10x nginx's CPU per request; PUT 12x) are printed
beside each ratio. Nothing is asserted.
"""

from __future__ import annotations

from typing import Any

from bench.small_requests import OBJECT_SIZE, OPS, render

TARGETS = {"get": 10.0, "head": 10.0, "presigned": 10.0, "put": 12.0}
FLOOR_CASE = "get-instant-floor-relay-lean"


def pure_steps(rounds: int = 5000) -> dict[str, dict[str, float]]:
    """bench/perrequest.py's steps per operation, µs (imported here: it loads s3shim)."""
    import os
    import sys

    from bench import perrequest
    from s3shim import logs

    saved = sys.stderr
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (the log lines: rendered, then dropped)
    try:
        logs.configure("info", "json")
        proxy = perrequest.make_proxy()
        proxy.log = logs.get()
        out = {}
        for op in OPS:
            body = b"x" * OBJECT_SIZE if op == "put" else b""
            req = render(op, perrequest.HOST, body)
            out[op] = perrequest.measure(proxy, req, rounds)
        return out
    finally:
        sys.stderr.close()
        sys.stderr = saved


def owners(
    results: list[dict[str, Any]], pure: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    """One row per operation measured on INSTANT through s3shim (1 worker) and nginx."""
    by = {r["case"]: r for r in results}
    floor_case = by.get(FLOOR_CASE)
    floor = floor_case["proxy_cpu_us_per_req"] if floor_case else None
    rows = []
    for op in OPS:
        shim, nginx = by.get(f"{op}-instant-s3shim"), by.get(f"{op}-instant-nginx")
        if shim is None or op not in pure:
            continue
        total = shim["proxy_cpu_us_per_req"]
        steps = {k: round(v, 1) for k, v in pure[op].items() if k != "total"}
        pure_sum = sum(steps.values())
        ng = nginx["proxy_cpu_us_per_req"] if nginx else None
        rows.append(
            {
                "op": op,
                "s3shim_us": total,
                "nginx_us": ng,
                "ratio": round(total / ng, 1) if ng else None,
                "target": TARGETS[op],
                "floor_us": floor,
                "pure_us": round(pure_sum, 1),
                "pure_steps_us": steps,
                "rest_us": round(total - pure_sum - (floor or 0), 1) if total else None,
                # What the pure steps and the rest may cost for the target to hold.
                "budget_us": round(TARGETS[op] * ng - (floor or 0), 1) if ng else None,
            }
        )
    return rows


def print_owners(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    print(
        f"\n{'owners (CPU µs/request)':<24} {'s3shim':>7} {'nginx':>6} {'ratio':>6} {'target':>6}"
        f" {'floor':>6} {'pure':>6} {'rest':>6} {'budget':>7}   pure steps"
    )
    for r in rows:
        steps = " ".join(f"{k} {v:.1f}" for k, v in r["pure_steps_us"].items() if v >= 0.5)
        print(
            f"{r['op'] + '-instant':<24} {r['s3shim_us']:>7.0f} {_f(r['nginx_us'], '6.0f')} "
            f"{_f(r['ratio'], '6.1f')} {r['target']:>6.0f} {_f(r['floor_us'], '6.0f')} "
            f"{r['pure_us']:>6.0f} {_f(r['rest_us'], '6.0f')} {_f(r['budget_us'], '7.0f')}"
            f"   {steps}"
        )
    print(
        "floor: bench/floor.py relay-lean (GET) in this run; pure: bench/perrequest.py's steps in"
        " this process;\nrest: the measured total minus both; budget: what pure + rest may cost"
        " for the target ratio to hold."
    )


def _f(value: float | None, spec: str) -> str:
    return "-".rjust(len(format(0, spec))) if value is None else format(value, spec)
