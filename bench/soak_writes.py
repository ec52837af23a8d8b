"""The soak's writes through s3shim: PutObject and multipart uploads in every framing, each
with its fault, then judged by what the store holds."""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import Iterator
from typing import Any

from bench.soak_plan import ALGORITHMS, FRAMINGS, KIB, STREAMING, Plan, checksum_b64
from bench.soak_state import Outcome, SoakBase
from bench.soak_verdicts import COMPLETE, FINDINGS, Digest, classify_write, expectation, worst
from bench.soak_wire import (
    Answer,
    boto_call,
    build_put,
    forgeries_for,
    reply_answer,
    safe_send,
    send_cut,
    slowly,
    split_randomly,
)
from testkit.shim import Shim


class Writes(SoakBase):
    # -- PutObject --------------------------------------------------------------------
    def _op_put(self, plan: Plan) -> Outcome:
        rng = random.Random(f"{self.cfg.seed}:{plan.index}:run")
        key, token = self._key(plan)
        data = rng.randbytes(plan.size)
        new = Digest.of(data)
        old: Digest | None = None
        if plan.overwrite:
            old_data = rng.randbytes(plan.size + 1 + rng.randint(0, 64 * KIB))
            old = Digest.of(old_data)
            self._register(key, new, old)  # before the write: it may fail half-way
            self.put_direct(key, old_data)
            self.count_written(len(old_data))
        else:
            self._register(key, new, None)
        with self.runner.sigterm_lock if plan.fault == "sigterm" else contextlib.nullcontext():
            gen0, _ = self.runner.current()
            fault = self._relay_fault(plan, token, rng, plan.size)
            ans, fired, variant = self._upload(
                plan, rng, f"/{self.bucket}/{key}", [], data, key=key
            )
            fired = self._fired(fault) or fired
        disturbed = self.runner.generation != gen0
        self.count_written(plan.size)
        if plan.fault == "client_cut":
            time.sleep(0.2)  # let s3shim see the hang-up; the final sweep checks again
        found = self.stored(key)
        cls = classify_write(
            expectation(plan.fault, variant), ans.status, ans.code, found, new, old, disturbed
        )
        cls = worst(cls, self._vouched(ans, data))
        if found is not None or old is not None:
            self.delete(key)
        return Outcome.of(plan, cls, ans, fired, disturbed, variant)

    @staticmethod
    def _vouched(ans: Answer, data: bytes) -> tuple[str, str]:
        """A checksum s3shim returns on a 2xx must be the data's own."""
        if not 200 <= ans.status < 300:
            return ("IDENTICAL", "")
        for alg in ALGORITHMS:
            got = ans.headers.get(f"x-amz-checksum-{alg.lower()}")
            if got is not None and got != checksum_b64(alg, data):
                return (
                    "WRONG-STATUS",
                    f"answered x-amz-checksum-{alg.lower()} {got}, "
                    f"the data's is {checksum_b64(alg, data)}",
                )
        return ("IDENTICAL", "")

    def _upload(
        self,
        plan: Plan,
        rng: random.Random,
        path: str,
        query: list[tuple[str, str]],
        data: bytes,
        *,
        key: str,
        part: tuple[str, int] | None = None,
        fault: str | None = None,
        framing: str | None = None,
        alg: str | None = "auto",
    ) -> tuple[Answer, bool, str]:
        """One PutObject or UploadPart (``part`` = (upload id, number)) through s3shim.

        Returns the answer, whether a client-side fault was applied, and its variant.
        """
        fault = plan.fault if fault is None else fault
        framing = plan.framing if framing is None else framing
        gen, shim = self.runner.current()
        ans, fired, variant = self._send_upload(
            plan, rng, path, query, data, key, part, fault, framing, alg, gen, shim
        )
        what = f"part {part[1]}" if part is not None else "put"
        self.note(
            f"{what} ({fault}, {framing}{', ' + variant if variant else ''})",
            ans,
            shim=shim.pid,
            generation=gen,
            client_fault=fired,
        )
        return ans, fired, variant

    def _send_upload(
        self,
        plan: Plan,
        rng: random.Random,
        path: str,
        query: list[tuple[str, str]],
        data: bytes,
        key: str,
        part: tuple[str, int] | None,
        fault: str,
        framing: str,
        alg: str | None,
        gen: int,
        shim: Shim,
    ) -> tuple[Answer, bool, str]:
        if framing == "boto3":
            return self._boto_upload(gen, shim, rng, data, key, part, fault, alg)
        if alg == "auto":
            if framing in ("signed-trailer", "unsigned-trailer"):
                alg = rng.choice(ALGORITHMS) if rng.random() < 0.9 else None
            else:
                alg = rng.choice(ALGORITHMS) if rng.random() < 0.6 else None
            if fault == "wrong_checksum" and alg is None:
                alg = rng.choice(ALGORITHMS)
        variant = ""
        if fault == "forged_signature":
            variant = rng.choice(forgeries_for(framing, len(data), alg))
        te = framing in STREAMING and rng.random() < 0.25
        req = build_put(
            shim.endpoint,
            path,
            query,
            data,
            framing,
            access_key=shim.access_key,
            secret_key=shim.secret_key,
            rng=rng,
            alg=alg,
            wrong_checksum=fault == "wrong_checksum",
            wrong_sha256=fault == "wrong_sha256",
            forgery=variant or None,
            te_chunked=te,
        )
        variant = variant or ("te-chunked" if te else "")
        if fault == "client_cut":
            n = len(req.body)
            cut_at = rng.choice([0, n // 2, max(0, n - 1), rng.randint(0, max(0, n - 1))])
            if n and req.body.endswith(b"\r\n\r\n") and rng.random() < 0.3:
                cut_at = n - 2  # everything but the last CRLF of the trailer section
            failed = send_cut(
                shim.endpoint, path, query, req, min(cut_at, max(0, n - 1)), rst=rng.random() < 0.5
            )
            if failed is not None:
                return Answer(0, failed), False, variant
            return Answer(0, "client-cut"), True, variant
        writes = split_randomly(req.body, rng, 1, 600 * KIB) if req.body else []
        if fault == "slow_client":
            reply = safe_send(shim.endpoint, path, req.headers, query, slowly(writes, rng))
            return reply_answer(reply), True, variant
        if fault == "sigterm":  # the caller holds runner.sigterm_lock
            terminated: list[Shim] = []
            spare = self.runner.spare()
            try:
                reply = safe_send(
                    shim.endpoint,
                    path,
                    req.headers,
                    query,
                    self._sigterm_midway(req.body, rng, spare, terminated),
                )
            finally:
                if not terminated:  # the upload never got as far: the spare is not needed
                    spare[1].close()
            for old in terminated:
                self.runner.reap(old, self.cfg.grace + 15)
            return reply_answer(reply), bool(terminated), variant
        reply = safe_send(shim.endpoint, path, req.headers, query, writes)
        applied = fault in ("wrong_checksum", "wrong_sha256", "forged_signature")
        return reply_answer(reply), applied, variant

    def _sigterm_midway(
        self,
        body: bytes,
        rng: random.Random,
        spare: tuple[Shim, contextlib.ExitStack],
        terminated: list[Shim],
    ) -> Iterator[bytes]:
        """Send part of the body, SIGTERM s3shim (the spare takes over), send the rest."""
        step = max(1, len(body) // 12)
        pieces = [body[i : i + step] for i in range(0, len(body), step)]
        at = rng.randint(1, max(1, len(pieces) - 1))
        for i, piece in enumerate(pieces):
            if i == at:
                terminated.append(self.runner.sigterm(spare))
            time.sleep(0.02)
            yield piece
        if not terminated:
            terminated.append(self.runner.sigterm(spare))

    def _boto_upload(
        self,
        gen: int,
        shim: Shim,
        rng: random.Random,
        data: bytes,
        key: str,
        part: tuple[str, int] | None,
        fault: str,
        alg: str | None,
    ) -> tuple[Answer, bool, str]:
        client = self.shim_boto(gen, shim)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": data}
        if part is not None:
            kwargs.update(UploadId=part[0], PartNumber=part[1])
        algo = rng.choice(ALGORITHMS) if alg == "auto" else alg
        variant = ""
        if fault == "wrong_checksum":
            algo = algo or "CRC32"
            # boto3 sends a value it is given as it is (it computes one only when it has none).
            kwargs[f"Checksum{algo}"] = checksum_b64(algo, data + b"\0")
            variant = algo
        elif algo is not None and rng.random() < 0.5:
            kwargs["ChecksumAlgorithm"] = algo  # else boto3's default (CRC32 over http)
        fn = client.upload_part if part is not None else client.put_object
        ans, _ = boto_call(fn, **kwargs)
        return ans, fault == "wrong_checksum", variant

    # -- multipart --------------------------------------------------------------------
    def _op_multipart(self, plan: Plan) -> Outcome:
        rng = random.Random(f"{self.cfg.seed}:{plan.index}:run")
        key, token = self._key(plan)
        data = rng.randbytes(plan.size)
        new = Digest.of(data)
        self._register(key, new, None)
        gen0, shim = self.runner.current()
        client = self.shim_boto(gen0, shim)
        declare = rng.random() < 0.5
        create_kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if declare:
            create_kwargs["ChecksumAlgorithm"] = "CRC32"
        ans, resp = boto_call(client.create_multipart_upload, **create_kwargs)
        self.note("create", ans, shim=shim.pid, generation=gen0)
        result: tuple[str, str] = ("IDENTICAL", "")
        if resp is None:
            disturbed = self.runner.generation != gen0
            cls = ("ABSENT", "") if disturbed else ("WRONG-STATUS", f"create answered {ans.status}")
            return Outcome.of(plan, cls, ans, False, disturbed, "")
        upload_id = resp["UploadId"]
        fault_part = rng.randint(1, len(plan.part_sizes))
        parts: list[dict[str, Any]] = []
        fired, variant, offset, fault_ans = False, "", 0, Answer(0)
        try:
            for n, size in enumerate(plan.part_sizes, start=1):
                chunk = data[offset : offset + size]
                offset += size
                query = [("partNumber", str(n)), ("uploadId", upload_id)]
                upload = functools.partial(
                    self._upload,
                    plan,
                    rng,
                    f"/{self.bucket}/{key}",
                    query,
                    chunk,
                    key=key,
                    part=(upload_id, n),
                    alg="CRC32" if declare else "auto",
                )
                if n == fault_part and plan.fault != "none":
                    rf = self._relay_fault(plan, f"{token}?partNumber={n}&", rng, size)
                    ans, applied, variant = upload()
                    fired = self._fired(rf) or applied
                    fault_ans = ans
                    self.count_written(size)
                    if 200 <= ans.status < 300:
                        # Accepted: right only if the fault allows it (a forged part is not).
                        part_class = classify_write(
                            expectation(plan.fault, variant),
                            ans.status,
                            ans.code,
                            Digest.of(chunk),
                            Digest.of(chunk),
                            None,
                            self.runner.generation != gen0,
                        )
                        if part_class[0] in FINDINGS:
                            result = worst(result, part_class)
                        result = worst(result, self._vouched(ans, chunk))
                        parts.append(self._part_entry(n, ans, chunk))
                        continue
                    if plan.fault == "client_cut":
                        time.sleep(0.2)
                    if self._part_listed(key, upload_id, n):
                        result = worst(
                            result, ("HALF-STORED", f"part {n} answered {ans.status} but is listed")
                        )
                    expect = expectation(plan.fault, variant)
                    if expect.mode == "refuse":
                        st = classify_write(
                            expect,
                            ans.status,
                            ans.code,
                            None,
                            Digest.of(chunk),
                            None,
                            self.runner.generation != gen0,
                        )
                        if st[0] in FINDINGS:
                            result = worst(result, st)
                # A clean upload of this part (the first try, or again after the fault).
                clean_framing = rng.choice(FRAMINGS)
                for _attempt in range(3):
                    ans, _, _ = upload(fault="none", framing=clean_framing)
                    if 200 <= ans.status < 300 or self.runner.generation == gen0:
                        break
                self.count_written(size)
                if not 200 <= ans.status < 300:
                    if self.runner.generation != gen0:
                        return Outcome.of(
                            plan, worst(result, ("ABSENT", "")), fault_ans, fired, True, variant
                        )
                    return Outcome.of(
                        plan,
                        worst(
                            result,
                            (
                                "WRONG-STATUS",
                                f"clean part {n} answered {ans.status} {ans.code or ''}",
                            ),
                        ),
                        fault_ans,
                        fired,
                        False,
                        variant,
                    )
                result = worst(result, self._vouched(ans, chunk))
                parts.append(self._part_entry(n, ans, chunk))
            gen, shim = self.runner.current()
            client = self.shim_boto(gen, shim)
            ans, resp = boto_call(
                client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            self.note("complete", ans, shim=shim.pid, generation=gen)
            disturbed = self.runner.generation != gen0
            found = self.stored(key)
            cls = classify_write(COMPLETE, ans.status, ans.code, found, new, None, disturbed)
            result = worst(result, cls)
            if found is not None:
                self.delete(key)
            return Outcome.of(
                plan, result, fault_ans if plan.fault != "none" else ans, fired, disturbed, variant
            )
        finally:
            with contextlib.suppress(Exception):
                self.direct().abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
                self.note("abort")

    @staticmethod
    def _part_entry(n: int, ans: Answer, chunk: bytes) -> dict[str, Any]:
        entry: dict[str, Any] = {"PartNumber": n, "ETag": ans.headers.get("etag", "")}
        got = ans.headers.get("x-amz-checksum-crc32")
        if got is not None:
            entry["ChecksumCRC32"] = got
        return entry

    def _part_listed(self, key: str, upload_id: str, n: int) -> bool:
        resp = self.direct().list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id)
        listed = any(p["PartNumber"] == n for p in resp.get("Parts", []))
        self.note(f"list parts: part {n} {'listed' if listed else 'not listed'}")
        return listed
