"""Deployment labels for policies (issue 13): ``zdr`` and ``tags`` from the config to the catalog, to
``GET /admin/routes/health`` and to ``switchyard route explain``; and a static key's data class and PII mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from switchyard.catalog import Catalog
from switchyard.cli.main import main
from switchyard.config import ConfigError, parse_config
from switchyard.server.admin.routes_health import RoutesHealth
from tests.support.gateway import MASTER_KEY, base_config, run_gateway

DEPLOYMENTS = [
    {"name": "au-zdr", "provider": "sim", "region": "au", "zdr": True, "tags": ["small", "approved"]},
    {"name": "us-plain", "provider": "sim", "region": "us"},
]


def config(**overrides: Any) -> dict[str, Any]:
    cfg = {"providers": {"sim": {"type": "simulated"}}, "deployments": DEPLOYMENTS,
           "routes": {"any": {"targets": ["au-zdr", "us-plain"]}}, **overrides}
    return base_config(**cfg)


def test_the_catalog_carries_zdr_and_tags() -> None:
    catalog = Catalog.from_config(parse_config(config(), "<test>", {}))
    d, plain = catalog.deployments["au-zdr"], catalog.deployments["us-plain"]
    assert d.zdr is True and d.tags == frozenset({"small", "approved"})
    assert plain.zdr is False and plain.tags == frozenset()


@pytest.mark.parametrize(("deployment", "where"), [
    ({"zdr": "sometimes"}, "zdr"),
    ({"tags": "small"}, "tags"),
    ({"tags": [""]}, "tags"),
])
def test_bad_labels_are_config_errors(deployment: dict[str, Any], where: str) -> None:
    cfg = config(deployments=[{**DEPLOYMENTS[1], **deployment}], routes={})
    with pytest.raises(ConfigError) as info:
        parse_config(cfg, "<test>", {})
    assert where in str(info.value)


def test_a_static_key_s_class_is_checked() -> None:
    cfg = config(keys=[{"key": "sk-test-static-000", "data_class": "Internal", "pii_mode": "mask"}])
    key = parse_config(cfg, "<test>", {}).keys[0]
    assert (key.data_class, key.pii_mode) == ("internal", "mask")
    for bad in ({"data_class": "secret"}, {"pii_mode": "hide"}):
        with pytest.raises(ConfigError) as info:
            parse_config(config(keys=[{"key": "sk-test-static-000", **bad}]), "<test>", {})
        assert next(iter(bad)) in str(info.value)


def test_the_health_report_shows_the_labels() -> None:
    with run_gateway(config()) as gw:
        r = httpx.get(gw.url + "/admin/routes/health", headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert r.status_code == 200
    RoutesHealth.model_validate(r.json())  # the documented schema holds
    by_name = {d["deployment"]: d for d in r.json()["deployments"]}
    assert (by_name["au-zdr"]["zdr"], by_name["au-zdr"]["tags"]) == (True, ["approved", "small"])
    assert (by_name["us-plain"]["zdr"], by_name["us-plain"]["tags"]) == (False, [])


def test_route_explain_shows_the_labels(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("""
providers:
  sim: {type: simulated}
deployments:
  - {name: au-zdr, provider: sim, zdr: true, tags: [small, approved]}
  - {name: us-plain, provider: sim}
routes:
  any: {targets: [au-zdr, us-plain]}
""")
    result = CliRunner().invoke(main, ["route", "explain", "--config", str(path), "--model", "any"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = {ln.split("│")[2].strip(): ln for ln in result.output.splitlines() if ln.startswith("│ ")
            and ln.split("│")[1].strip().isdigit()}
    assert "zdr, approved, small" in rows["au-zdr"]
    assert "zdr" not in rows["us-plain"].split("│")[-2]
