"""The deployment files, checked offline and fast.

Every YAML under deploy/ parses; the Kubernetes manifests pass ``kubernetes-validate --strict``
for 1.30 and wire s3shim the way it reads its configuration (s3shim/config.py); the
standalone HorizontalPodAutoscaler targets the s3shim Deployment on CPU, which it can only do
when every container requests CPU; the Dockerfile passes hadolint and has the properties the
manifests rely on (UID, ports, env defaults, exec-form entrypoint); the compose file wires
Convex -> s3shim -> MinIO.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from s3shim.config import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_UID = 10001
K8S_VERSION = "1.30.0"

KNOWN_ENV = {o.env for o in OPTIONS} | {e for o in OPTIONS for e in o.fallback_env}
DEFAULTS = {o.env: o.default for o in OPTIONS}


# ------------------------------------------------------------------------------ helpers
def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def tool(name: str) -> str:
    """A linter installed in the venv (requirements/test.lock) or on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found:
        return found
    reason = f"{name} is not installed (pip: see requirements/test.lock)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for d in by_kind(docs, kind):
        if d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"no {kind}/{name}")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> literal value, or ("secret", secret name, key) for a secretKeyRef."""
    out: dict[str, Any] = {}
    for e in container.get("env", []):
        assert e["name"] not in out, f"{container['name']}: {e['name']} set twice"
        if "value" in e:
            out[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            out[e["name"]] = ("secret", ref["name"], ref["key"])
    return out


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"{container['name']}: no port named {port!r}")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def s3shim_containers() -> list[tuple[str, dict[str, Any], dict[str, Any], list[dict[str, Any]]]]:
    """(file, pod spec, s3shim container, all docs of that file) for every s3shim in k8s/."""
    found = []
    for path in K8S:
        docs = load_docs(path)
        for dep in by_kind(docs, "Deployment"):
            spec = pod_spec(dep)
            for c in spec.get("initContainers", []) + spec["containers"]:
                if c["name"] == "s3shim":
                    found.append((path.name, spec, c, docs))
    return found


SHIMS = s3shim_containers()


def setting(env: dict[str, Any], name: str) -> str:
    value = env.get(name, DEFAULTS.get(name))
    assert isinstance(value, str), f"{name} must be a literal value here"
    return value


# --------------------------------------------------------------------------- parse / lint
def test_every_deploy_yaml_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert COMPOSE in files and len(K8S) >= 2
    for path in files:
        docs = load_docs(path)
        assert docs, f"{path} is empty"
    for path in K8S:
        for d in load_docs(path):
            assert {"apiVersion", "kind", "metadata"} <= d.keys(), f"{path}: {d}"
            assert d["metadata"].get("name")


@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_kubernetes_validate_strict(path: Path) -> None:
    exe = tool("kubernetes-validate")
    r = subprocess.run(
        [exe, "--strict", "-k", K8S_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "passed" in r.stdout, r.stdout


def test_kubernetes_validate_is_strict(tmp_path: Path) -> None:
    """The validator really rejects an unknown field (so a pass above means something)."""
    exe = tool("kubernetes-validate")
    docs = load_docs(DEPLOY / "k8s" / "standalone.yaml")
    dep = by_kind(docs, "Deployment")[0]
    pod_spec(dep)["containers"][0]["readinessProbes"] = []  # typo of readinessProbe
    hpa = named(docs, "HorizontalPodAutoscaler", "s3shim")
    # autoscaling/v1's field, not part of autoscaling/v2: the HPA's own schema is checked too.
    hpa["spec"]["targetCPUUtilizationPercentage"] = 80
    for i, doc in enumerate((dep, hpa)):
        bad = tmp_path / f"bad{i}.yaml"
        bad.write_text(yaml.safe_dump(doc))
        r = subprocess.run(
            [exe, "--strict", "-k", K8S_VERSION, str(bad)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode != 0, r.stdout


def test_hadolint_clean() -> None:
    exe = tool("hadolint")
    r = subprocess.run(
        [exe, "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr


# ----------------------------------------------------------------------------- Dockerfile
def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuations joined, comments dropped) grouped by stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        assert stages, f"instruction before FROM: {line}"
        stages[-1].append(line)
    return stages


def test_dockerfile_shape() -> None:
    stages = dockerfile_stages()
    assert len(stages) == 2, "builder + final"
    assert all(s[0].split()[1] == "python:3.11-slim" for s in stages)
    final = stages[-1]
    ops: dict[str, list[str]] = {}
    for ins in final:
        ops.setdefault(ins.split()[0].upper(), []).append(ins)

    # Only the venv comes from the builder; no source tree in the final stage.
    assert [c for c in ops["COPY"] if "--from=builder" in c] == ops["COPY"]
    assert all("/opt/venv" in c for c in ops["COPY"])
    assert ops["USER"] == [f"USER {IMAGE_UID}:{IMAGE_UID}"]
    assert set(ops["EXPOSE"][0].split()[1:]) == {"8080", "9090"}
    env = " ".join(ops["ENV"])
    for setting_ in (
        "S3SHIM_LISTEN_HOST=0.0.0.0",
        "S3SHIM_ADMIN_HOST=0.0.0.0",
        "S3SHIM_LOG_FORMAT=json",
        "PYTHONDONTWRITEBYTECODE=1",
        f"S3SHIM_LISTEN_PORT={DEFAULTS['S3SHIM_LISTEN_PORT']}",
    ):
        assert setting_ in env
    for name in re.findall(r"\b(S3SHIM_[A-Z_]+|AWS_[A-Z_]+)=", env):
        assert name in KNOWN_ENV, f"Dockerfile sets unknown option {name}"
    assert re.fullmatch(r'ENTRYPOINT \["[^"]+"(, "[^"]+")*\]', ops["ENTRYPOINT"][0]), "exec form"
    (hc,) = ops["HEALTHCHECK"]
    assert "/healthz" in hc and "S3SHIM_ADMIN_PORT" in hc and 'CMD ["python"' in hc

    builder = " ".join(stages[0])
    assert "requirements/runtime.lock" in builder and "--no-deps" in builder
    assert "pip wheel" in builder


def test_dockerignore_admits_what_the_build_copies() -> None:
    rules = [
        r.strip()
        for r in (ROOT / ".dockerignore").read_text().splitlines()
        if r.strip() and not r.startswith("#")
    ]
    assert rules[0] == "*", "allow-list style"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for ins in dockerfile_stages()[0]:
        if ins.upper().startswith("COPY ") and "--from" not in ins:
            for src in ins.split()[1:-1]:
                assert src.rstrip("/") in allowed, f"{src} is excluded by .dockerignore"
    for excluded in (".git", ".venv", "tests", ".state"):
        assert excluded not in allowed


def test_runtime_lock_matches_test_lock() -> None:
    def pins(path: Path) -> dict[str, str]:
        out = {}
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                name, version = line.split("==")
                out[re.sub(r"[-_.]+", "-", name).lower()] = version
        return out

    runtime = pins(ROOT / "requirements" / "runtime.lock")
    test = pins(ROOT / "requirements" / "test.lock")
    for need in ("aiohttp", "multidict", "yarl", "structlog", "awscrt", "prometheus-client"):
        assert need in runtime
    assert "uvloop" in runtime
    for name, version in runtime.items():
        assert test.get(name) == version, f"{name}: runtime {version}, test {test.get(name)}"


# ------------------------------------------------------------------------------ k8s: s3shim
def test_both_manifests_run_s3shim() -> None:
    assert sorted(f for f, *_ in SHIMS) == ["sidecar.yaml", "standalone.yaml"]


@pytest.mark.parametrize("case", SHIMS, ids=lambda c: c[0])
def test_s3shim_settings_are_known_and_complete(case: Any) -> None:
    _, _, c, docs = case
    env = env_of(c)
    for name in env:
        assert name in KNOWN_ENV, f"s3shim does not read {name}"
    assert setting(env, "S3SHIM_UPSTREAM_URL").startswith(("http://", "https://"))
    assert ".svc" in env["S3SHIM_UPSTREAM_URL"], "upstream is the RGW Service"
    # The store key pair comes from a Secret that exists, with placeholder values.
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        source, secret_name, secret_key = env[key]
        assert source == "secret", f"{key} must come from a Secret"
        secret = named(docs, "Secret", secret_name)
        assert "REPLACE" in secret["stringData"][secret_key]
    # S3 port: the container port named s3 is where s3shim listens.
    assert port_number(c, "s3") == int(setting(env, "S3SHIM_LISTEN_PORT"))
    image = c["image"]
    assert re.fullmatch(r"[\w.\-/]+/s3shim:[\w.\-]+", image) and not image.endswith(":latest")


@pytest.mark.parametrize("case", SHIMS, ids=lambda c: c[0])
def test_probes_hit_the_admin_listener(case: Any) -> None:
    _, _, c, _ = case
    env = env_of(c)
    admin = int(setting(env, "S3SHIM_ADMIN_PORT"))
    assert admin != int(setting(env, "S3SHIM_LISTEN_PORT"))
    # The kubelet probes the pod IP, not loopback.
    assert setting(env, "S3SHIM_ADMIN_HOST") == "0.0.0.0"
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    if "startupProbe" in c:
        expected["startupProbe"] = "/healthz"
    for probe, path in expected.items():
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert port_number(c, get["port"]) == admin, probe


@pytest.mark.parametrize("case", SHIMS, ids=lambda c: c[0])
def test_security_context(case: Any) -> None:
    _, spec, c, _ = case
    pod = spec.get("securityContext", {})
    sc = {**pod, **c.get("securityContext", {})}
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == IMAGE_UID
    assert sc.get("runAsGroup", IMAGE_UID) == IMAGE_UID
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not sc["capabilities"].get("add")
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec.get("automountServiceAccountToken") is False
    res = c["resources"]
    assert {"cpu", "memory"} <= res["requests"].keys()
    assert "memory" in res["limits"]


@pytest.mark.parametrize("case", SHIMS, ids=lambda c: c[0])
def test_grace_period_covers_prestop_and_drain(case: Any) -> None:
    name, spec, c, _ = case
    env = env_of(c)
    grace = float(setting(env, "S3SHIM_SHUTDOWN_GRACE_SECONDS"))
    cmd = c["lifecycle"]["preStop"]["exec"]["command"]
    assert cmd[0] == "sleep"
    pre_stop = float(cmd[1])
    assert 0 < pre_stop <= 15
    budget = pre_stop + grace + 5  # + margin for the process to exit
    if name == "sidecar.yaml":
        budget += 10  # a native sidecar is signalled only after Convex itself stopped
    assert spec["terminationGracePeriodSeconds"] >= budget


# ----------------------------------------------------------------------- k8s: sidecar wiring
def test_sidecar_wiring() -> None:
    docs = load_docs(DEPLOY / "k8s" / "sidecar.yaml")
    spec = pod_spec(named(docs, "Deployment", "convex-backend"))
    (shim,) = [c for c in spec["initContainers"] if c["name"] == "s3shim"]
    assert shim["restartPolicy"] == "Always", "native sidecar"
    (convex,) = [c for c in spec["containers"] if c["name"] == "convex-backend"]
    assert convex["image"].startswith("ghcr.io/get-convex/convex-backend:")
    assert not convex["image"].endswith(":latest")
    shim_env, convex_env = env_of(shim), env_of(convex)

    port = setting(shim_env, "S3SHIM_LISTEN_PORT")
    assert convex_env["S3_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
    assert setting(shim_env, "S3SHIM_LISTEN_HOST") in ("127.0.0.1", "0.0.0.0")
    # One key pair, from the same Secret keys, in both containers.
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert shim_env[key] == convex_env[key]
        assert shim_env[key][0] == "secret"
    assert shim_env["AWS_REGION"] == convex_env["AWS_REGION"]
    # RGW needs both switches; Convex itself stays unmodified.
    assert shim_env["AWS_S3_DISABLE_SSE"] == "true"
    assert shim_env["AWS_S3_DISABLE_CHECKSUMS"] == "true"
    assert not [n for n in convex_env if n.startswith(("S3SHIM_", "AWS_S3_DISABLE"))]
    for use in ("FILES", "EXPORTS", "SNAPSHOT_IMPORTS", "MODULES", "SEARCH"):
        assert convex_env[f"S3_STORAGE_{use}_BUCKET"]
    secret = named(docs, "Secret", "convex-instance")
    assert "REPLACE" in secret["stringData"]["INSTANCE_SECRET"]
    # The Service reaches Convex.
    svc = named(docs, "Service", "convex-backend")
    labels = named(docs, "Deployment", "convex-backend")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()


# -------------------------------------------------------------------- k8s: standalone wiring
def test_standalone_wiring_and_private_ca() -> None:
    docs = load_docs(DEPLOY / "k8s" / "standalone.yaml")
    dep = named(docs, "Deployment", "s3shim")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    spec = pod_spec(dep)
    (c,) = spec["containers"]
    env = env_of(c)
    assert setting(env, "S3SHIM_LISTEN_HOST") == "0.0.0.0"

    svc = named(docs, "Service", "s3shim")
    assert svc["spec"]["selector"].items() <= labels.items()
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert port_number(c, ports["s3"]["targetPort"]) == int(setting(env, "S3SHIM_LISTEN_PORT"))
    assert port_number(c, ports["admin"]["targetPort"]) == int(setting(env, "S3SHIM_ADMIN_PORT"))

    pdb = named(docs, "PodDisruptionBudget", "s3shim")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = named(docs, "HorizontalPodAutoscaler", "s3shim")
    # Fewer pods may never be forced than the HPA keeps, or a node drain would block.
    assert 0 < pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]

    # Private CA: the bundle path lies in a read-only mount of a ConfigMap holding that key.
    assert env["S3SHIM_UPSTREAM_URL"].startswith("https://")
    ca_path = Path(env["S3SHIM_UPSTREAM_CA_BUNDLE"])
    mounts = [m for m in c["volumeMounts"] if ca_path.parent == Path(m["mountPath"])]
    assert len(mounts) == 1 and mounts[0]["readOnly"] is True
    (vol,) = [v for v in spec["volumes"] if v["name"] == mounts[0]["name"]]
    cm = named(docs, "ConfigMap", vol["configMap"]["name"])
    pem = cm["data"][ca_path.name]
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and "REPLACE" in pem


# ------------------------------------------------------------------ k8s: standalone autoscaling
def cpu_cores(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity ("500m", "2", 1.5) in cores."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_cpu_cores() -> None:
    assert [cpu_cores(q) for q in ("500m", "2", 1, "1.5", "2000m")] == [0.5, 2, 1, 1.5, 2]


def test_standalone_hpa_scales_the_deployment_on_cpu() -> None:
    docs = load_docs(DEPLOY / "k8s" / "standalone.yaml")
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    ref = spec["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment")
    dep = named(docs, "Deployment", ref["name"])
    assert pod_spec(dep)["containers"][0]["name"] == "s3shim"
    # The HPA owns the replica count: a literal one would be reset by every `kubectl apply`.
    assert "replicas" not in dep["spec"]
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"]

    (metric,) = spec["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    target = metric["resource"]["target"]
    assert target["type"] == "Utilization" and 0 < target["averageUtilization"] <= 100

    # Utilization is a share of the CPU request: without one on EVERY container of the pod
    # the HPA computes nothing and never scales.
    pod = pod_spec(dep)
    for c in pod.get("initContainers", []) + pod["containers"]:
        assert "cpu" in c.get("resources", {}).get("requests", {}), c["name"]

    # Scale-down removes one pod at a time, and no faster than a pod drains.
    (policy,) = spec["behavior"]["scaleDown"]["policies"]
    assert (policy["type"], policy["value"]) == ("Pods", 1)
    assert policy["periodSeconds"] >= pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("case", SHIMS, ids=lambda c: c[0])
def test_cpu_resources_fit_the_workers(case: Any) -> None:
    """One worker process uses at most about one core: the limit must leave each one a core."""
    _, _, c, _ = case
    workers = int(setting(env_of(c), "S3SHIM_WORKERS"))
    res = c["resources"]
    request = cpu_cores(res["requests"]["cpu"])
    limit = cpu_cores(res["limits"].get("cpu", float("inf")))
    assert 0 < request <= limit
    assert limit >= workers


# --------------------------------------------------------------------------------- compose
def test_compose_wiring() -> None:
    (compose,) = load_docs(COMPOSE)
    services = compose["services"]
    assert {"minio", "minio-init", "s3shim", "backend"} <= services.keys()
    minio, init, shim, convex = (services[n] for n in ("minio", "minio-init", "s3shim", "backend"))
    shim_env, convex_env = shim["environment"], convex["environment"]

    # Images pinned; s3shim built from this repository's Dockerfile.
    for svc in (minio, init, convex):
        assert ":" in svc["image"] and not svc["image"].endswith(":latest")
    assert (DEPLOY / shim["build"]["context"] / shim["build"]["dockerfile"]).resolve() == (
        DOCKERFILE
    )

    for name in shim_env:
        assert name in KNOWN_ENV, f"s3shim does not read {name}"
    assert minio["command"][:2] == ["server", "/data"]
    assert shim_env["S3SHIM_UPSTREAM_URL"] == "http://minio:9000"
    assert shim_env["S3SHIM_LISTEN_HOST"] == "0.0.0.0"
    assert convex_env["S3_ENDPOINT_URL"] == f"http://s3shim:{shim_env['S3SHIM_LISTEN_PORT']}"
    assert shim_env["AWS_S3_DISABLE_SSE"] == "true"  # MinIO without a KMS refuses SSE-S3
    assert not [n for n in convex_env if n.startswith(("S3SHIM_", "AWS_S3_DISABLE"))]

    # One key pair: MinIO's root user, the key s3shim re-signs with, the key Convex signs with.
    assert (
        minio["environment"]["MINIO_ROOT_USER"]
        == shim_env["AWS_ACCESS_KEY_ID"]
        == convex_env["AWS_ACCESS_KEY_ID"]
        == init["environment"]["AWS_ACCESS_KEY_ID"]
    )
    assert (
        minio["environment"]["MINIO_ROOT_PASSWORD"]
        == shim_env["AWS_SECRET_ACCESS_KEY"]
        == convex_env["AWS_SECRET_ACCESS_KEY"]
        == init["environment"]["AWS_SECRET_ACCESS_KEY"]
    )
    assert shim_env["AWS_REGION"] == convex_env["AWS_REGION"]

    # minio-init creates every bucket Convex uses.
    script = " ".join(init["command"])
    buckets = {v for k, v in convex_env.items() if re.fullmatch(r"S3_STORAGE_\w+_BUCKET", k)}
    assert len(buckets) == 5
    for b in buckets:
        assert f"local/{b}" in script

    # Health checks and start order.
    for svc in (minio, shim, convex):
        assert svc["healthcheck"]["test"]
    shim_check = " ".join(shim["healthcheck"]["test"])
    assert f"127.0.0.1:{shim_env['S3SHIM_ADMIN_PORT']}/readyz" in shim_check
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    assert shim["depends_on"]["minio"]["condition"] == "service_healthy"
    assert convex["depends_on"]["s3shim"]["condition"] == "service_healthy"
    assert convex["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"

    # Hardening and shutdown as in Kubernetes.
    assert shim["read_only"] is True and shim["cap_drop"] == ["ALL"]
    assert shim["user"] == f"{IMAGE_UID}:{IMAGE_UID}"
    stop = int(str(shim["stop_grace_period"]).rstrip("s"))
    assert stop > float(shim_env["S3SHIM_SHUTDOWN_GRACE_SECONDS"])
