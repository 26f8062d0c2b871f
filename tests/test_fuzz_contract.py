"""Schemathesis against both OpenAPI documents, over HTTP, on a real ``switchyard serve`` process.

The gateway runs as a subprocess (governance on, a SQLite store, the simulated provider, so no upstream is
needed), so that its death and its memory can be observed. Each document is fuzzed twice: with a member's key
(mostly refusals: 403 and 404 must stay 4xx) and with the master key (everything reaches the handlers). Each run
is the ``schemathesis`` CLI with every phase (examples, coverage, fuzzing, stateful over the documents' links),
a fixed seed and a budget of examples per operation, so the run is reproducible and bounded (about a minute).

The checks: no 5xx (``not_a_server_error``); statuses, content types, headers and bodies as documented; requests
that the document forbids are refused (``negative_data_rejection``), and those it allows are never refused for
their shape (``schema_valid_shape_accepted``, in tests/support/fuzz_hooks.py); 405 with an ``Allow`` header for
undeclared methods; authentication enforced. After the runs the process is alive, answers, and its RSS is bounded.
The numbers (cases generated, 5xx answers) are printed and written to ``fuzz-summary.json`` under the test's
temporary directory; docs/security.md records them.

No operation is excluded: the gateway is this module's own, so a destructive call
(``DELETE /admin/orgs/{org_id}``) only destroys what the fuzzer created. One check is off for one resource, with
its reason at ``ADMIN_CONFIG``. The member's runs come first, so that the master key's runs (which may
revoke keys and delete users) cannot take the member's key away mid-run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.gateway import MASTER_KEY
from tests.support.governance import Admin
from tests.support.servers import ManagedProcess, free_port, run_process

SEED = 20260101
EXAMPLES = 10  # per operation and phase; with four runs the whole module takes about a minute on two cores
RSS_LIMIT_MB = 500
# `switchyard serve` under an address-space limit: a request that makes the gateway allocate without bound (an
# 18 GB embedding, say) then fails inside the gateway (a 5xx the fuzzer reports) instead of exhausting the machine
LAUNCH = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
          "from switchyard.cli.main import main; main()")
HOOKS = Path(__file__).parent / "support" / "fuzz_hooks.py"
CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
    "response_schema_conformance", "negative_data_rejection", "missing_required_header", "unsupported_method",
    "allow_header_conformance", "use_after_free", "ensure_resource_availability", "ignored_auth",
    "schema_valid_shape_accepted",
])
# positive_data_acceptance is replaced by schema_valid_shape_accepted (see fuzz_hooks.py for why).
# object_level_authorization needs two identities that each create objects; the RBAC tests cover tenant isolation.


@dataclass
class Served:
    url: str
    process: ManagedProcess
    member_key: str = ""
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.proc.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return kb / 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("fuzz")
    config = tmp / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "master_key": MASTER_KEY,
        "store": f"sqlite:///{tmp}/store.db",
        "providers": {"sim": {"type": "simulated", "output_tokens": 4}},
        "deployments": [
            {"name": "sim-a", "provider": "sim", "price": {"input": 1.0, "output": 2.0}},
            {"name": "sim-b", "provider": "sim", "capabilities": ["tools", "json", "vision", "files", "audio"]},
            {"name": "sim-c", "provider": "sim", "capabilities": ["embeddings"]},
        ],
        "routes": {"fast": {"targets": ["sim-a", "sim-b"]}},
        # The limit on failed authentications is off here, with reason: Schemathesis's own `ignored_auth` check
        # sends hundreds of bad keys from this one address, and after 20 of them the limiter rightly answers 429
        # where the check wants 401. tests/test_auth_flood.py holds the limiter to its contract; every operation
        # here still documents the 429 it may give.
        "governance": {"poll_interval": 0.2, "audit": {"flush_interval": 0.05}, "auth_failures": {"limit": 0}},
    }))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    cmd = [sys.executable, "-c", LAUNCH, "serve", "--config", str(config), "--port", str(port), "--log-level",
           "warning"]
    with run_process(cmd, f"{url}/health/ready", cwd=tmp, env=env, timeout=30) as process:
        yield Served(url, process)


@pytest.fixture(scope="module")
def member_key(served: Served) -> str:
    """A member of an org and a team, whose key may use sim-a, sim-c and the route ``fast`` (not sim-b)."""
    admin = Admin(served.url)
    org = admin.org()
    team = admin.team(org["id"])
    user = admin.user("member", org_id=org["id"], team_id=team["id"])
    key = admin.new_key(user_id=user["id"], models=["sim-a", "sim-c", "fast"])
    admin.close()
    return str(key["secret"])


def _data_plane_document(url: str) -> dict[str, Any]:
    """The served document, with ``model`` narrowed to the configured names plus one unknown one. The document
    says "any string" (true: any name is looked up); left at that, nearly every call would end in a 404 before
    the routing, pricing and provider code that the fuzzer is meant to reach."""
    doc: dict[str, Any] = httpx.get(f"{url}/v1/openapi.json").json()
    names = {"ChatCompletionRequest": ["sim-a", "sim-b", "fast", "no-such-model"],
             "EmbeddingRequest": ["sim-c", "sim-a", "no-such-model"],
             "MessageRequest": ["sim-a", "sim-b", "fast", "no-such-model"],
             "CountTokensRequest": ["sim-a", "fast", "no-such-model"]}
    for schema, models in names.items():
        doc["components"]["schemas"][schema]["properties"]["model"] = {"type": "string", "enum": models}
    return doc


def _run(served: Served, name: str, location: str, key: str, tmp: Path, config: Path | None = None,
         ) -> dict[str, Any]:
    """One ``schemathesis run``; returns its JSON report, with the HAR's request and 5xx counts added."""
    report, har = tmp / f"{name}.json", tmp / f"{name}.har"
    options = ["--config-file", str(config)] if config else []
    cmd = [sys.executable, "-m", "schemathesis.cli", "--no-color", *options, "run", location, "--url", served.url,
           "--seed", str(SEED),
           "--max-examples", str(EXAMPLES), "--workers", "1", "--checks", CHECKS, "--request-timeout", "30",
           "--suppress-health-check", "all",
           "-H", f"Authorization: Bearer {key}", "-H", f"x-api-key: {key}",
           "--report", "json,har", "--report-json-path", str(report), "--report-har-path", str(har)]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp)
    assert report.exists(), done.stdout[-4000:] + done.stderr[-4000:]
    result: dict[str, Any] = json.loads(report.read_text())
    entries = json.loads(har.read_text())["log"]["entries"]
    result["requests"] = len(entries)
    result["server_errors"] = [f"{e['request']['method']} {e['request']['url']} -> {e['response']['status']}"
                               for e in entries if e["response"]["status"] >= 500]
    result["output"] = done.stdout
    served.runs[name] = result
    assert served.process.proc.poll() is None, f"the gateway died during {name}:\n{served.process.output()[-4000:]}"
    return result


def _assert_clean(result: dict[str, Any]) -> None:
    cases = result["test_cases"]
    assert cases["generated"] > 0
    assert not result["server_errors"], "\n".join(result["server_errors"][:20])
    out = result["output"]
    failures = out[out.find("= FAILURES ="):out.find("= WARNINGS =")] if "= FAILURES =" in out else out[-6000:]
    assert result["exit_code"] == 0 and not result["failures"] and not result["errors"], failures[:20000]


ADMIN_CONFIG = """
[phases.stateful.generation]
max-examples = 100

# DELETE /admin/keys/{key_id} revokes: the record stays, revoked, for the audit trail, and GET still shows it
# (docs/governance.md). use_after_free would call that a deleted resource still available; the key no longer
# authenticates (tests/test_governance_identity_http.py::test_a_revoked_key_gets_401_at_once).
[[operations]]
include-path-regex = "^/admin/keys/[{]key_id[}]"
checks.use_after_free.enabled = false
"""


def _admin(served: Served, name: str, key: str, tmp: Path) -> dict[str, Any]:
    config = tmp / "schemathesis.toml"
    # Stateful sequences are cheap (no coverage phase to run) and are what reaches objects that exist: give them
    # more scenarios than the per-operation budget (about 60 scenarios, 2-3 s).
    config.write_text(ADMIN_CONFIG)
    return _run(served, name, f"{served.url}/admin/openapi.json", key, tmp, config=config)


def test_admin_api_as_member(served: Served, member_key: str, tmp_path: Path) -> None:
    _assert_clean(_admin(served, "admin-member", member_key, tmp_path))


def _data_plane(served: Served, name: str, key: str, tmp: Path) -> dict[str, Any]:
    doc, config = tmp / "v1.json", tmp / "schemathesis.toml"
    doc.write_text(json.dumps(_data_plane_document(served.url)))
    # The data plane's bodies are open (unknown fields are passed through), so no unexpected property is a
    # violation there; this also stops the coverage phase from calling an unknown *header* a violation.
    config.write_text("[generation]\nallow-extra-parameters = false\n")
    return _run(served, name, str(doc), key, tmp, config=config)


def test_data_plane_as_member(served: Served, member_key: str, tmp_path: Path) -> None:
    _assert_clean(_data_plane(served, "v1-member", member_key, tmp_path))


def test_admin_api_as_super_admin(served: Served, tmp_path: Path) -> None:
    _assert_clean(_admin(served, "admin-master", MASTER_KEY, tmp_path))


def test_data_plane_as_super_admin(served: Served, tmp_path: Path) -> None:
    _assert_clean(_data_plane(served, "v1-master", MASTER_KEY, tmp_path))


def test_gateway_survives_with_bounded_memory(served: Served, tmp_path: Path) -> None:
    """Runs last: the process is alive, still answers, and its resident memory stayed bounded."""
    assert served.process.proc.poll() is None
    assert httpx.get(f"{served.url}/health/live").status_code == 200
    rss = served.rss_mb()
    summary = {"seed": SEED, "examples_per_operation": EXAMPLES, "rss_mb": round(rss, 1), "runs": {
        name: {"generated": r["test_cases"]["generated"], "requests": r["requests"],
               "server_errors": len(r["server_errors"]), "failures": len(r["failures"])}
        for name, r in served.runs.items()}}
    summary["total_generated"] = sum(r["generated"] for r in summary["runs"].values())
    summary["total_server_errors"] = sum(r["server_errors"] for r in summary["runs"].values())
    (tmp_path / "fuzz-summary.json").write_text(json.dumps(summary, indent=2))
    print("fuzz summary:", json.dumps(summary))
    assert rss < RSS_LIMIT_MB, f"the gateway's RSS is {rss:.0f} MB after fuzzing"
