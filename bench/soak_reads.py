"""The soak's reads through s3shim: Range GETs (boto3 or raw) of an object stored directly,
one of them maybe cut by the relay."""

from __future__ import annotations

import http.client
import random
from typing import Any

from bench.soak_plan import KIB, MIB, Plan
from bench.soak_state import Outcome, SoakBase
from bench.soak_verdicts import Digest, classify_read, worst
from bench.soak_wire import Answer, cut_how, raw_get
from testkit.shim import Shim


class Reads(SoakBase):
    # -- Range GETs -------------------------------------------------------------------
    def _op_get(self, plan: Plan) -> Outcome:
        rng = random.Random(f"{self.cfg.seed}:{plan.index}:run")
        key, token = self._key(plan)
        data = rng.randbytes(plan.size)
        self._register(key, None, Digest.of(data))
        self.put_direct(key, data)
        self.count_written(plan.size)
        result: tuple[str, str] = ("READ-OK", "")
        fired, last_status = False, 0
        reads = rng.randint(1, 3)
        faulty = rng.randrange(reads)
        gen0, _ = self.runner.current()
        for i in range(reads):
            rng_header, expected, status, content_range = self._draw_range(rng, data)
            fault = None
            if i == faulty and plan.fault != "none":
                fault = self._relay_fault(plan, token, rng, len(expected), reading=True)
            gen, shim = self.runner.current()
            if plan.framing == "boto3":
                got_status, got_range, body, how = self._boto_get(gen, shim, key, rng_header)
            else:
                got_status, got_range, body, how = raw_get(
                    shim.endpoint,
                    f"/{self.bucket}/{key}",
                    rng_header,
                    access_key=shim.access_key,
                    secret_key=shim.secret_key,
                )
            this_fired = self._fired(fault)
            fired = fired or this_fired
            last_status = got_status
            cls = classify_read(
                expected_status=status,
                expected_range=content_range,
                expected=expected,
                status=got_status,
                content_range=got_range,
                body=body,
                faulted=this_fired or self.runner.generation != gen0,
            )
            if cls[0] != "READ-OK":  # which read, and how it broke
                what = rng_header or "whole object"
                cls = (cls[0], f"read {i + 1}/{reads} ({what}): {how or cls[1] or got_status}")
            result = worst(result, cls)
        self.delete(key)
        return Outcome.of(plan, result, Answer(last_status), fired, self.runner.generation != gen0)

    @staticmethod
    def _draw_range(rng: random.Random, data: bytes) -> tuple[str | None, bytes, int, str | None]:
        """(Range header, expected body, status, Content-Range) of one read."""
        n = len(data)
        if n == 0 or rng.random() < 0.25:
            return None, data, 200, None
        form = rng.choice(("a-b", "a-", "-n"))
        if form == "a-b":
            a = rng.randrange(n)
            b = rng.randint(a, min(n - 1, a + rng.choice((0, 1, 100, 64 * KIB, 2 * MIB, n))))
        elif form == "a-":
            a, b = rng.randrange(n), n - 1
        else:
            k = rng.randint(1, n)
            a, b = n - k, n - 1
        header = {"a-b": f"bytes={a}-{b}", "a-": f"bytes={a}-", "-n": f"bytes=-{n - a}"}[form]
        return header, data[a : b + 1], 206, f"bytes {a}-{b}/{n}"

    def _boto_get(
        self, gen: int, shim: Shim, key: str, rng_header: str | None
    ) -> tuple[int, str | None, bytes | None, str]:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.shim_boto(gen, shim)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if rng_header:
            kwargs["Range"] = rng_header
        try:
            resp = client.get_object(**kwargs)
        except ClientError as e:
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            return status, None, b"", e.response.get("Error", {}).get("Code") or ""
        except (BotoCoreError, OSError, http.client.HTTPException) as exc:
            return 0, None, None, cut_how(0, exc)
        status = int(resp["ResponseMetadata"]["HTTPStatusCode"])
        try:
            body = resp["Body"].read()
        except Exception as exc:  # urllib3 and botocore raise several types for a cut body
            return status, resp.get("ContentRange"), None, cut_how(status, exc)
        return status, resp.get("ContentRange"), body, ""
