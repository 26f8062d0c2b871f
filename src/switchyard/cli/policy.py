"""``switchyard policy test FILE.yaml``: run policy fixtures (docs/policy.md).

A fixture file is a list of cases (or a mapping with ``cases:`` and, optionally, ``deployments:`` to decide on
when no config is given). Each case is a principal, a request summary and the expected decision per deployment.
Exit status: 0 when every case matches, 1 on a mismatch, 2 on a bad fixture file, config or policy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import click
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import Config
from ..policy.explain import Described, DescribedPrincipal, DescribedRequest, DescribeError, Explanation, explain
from ..policy.facts import Resource

if TYPE_CHECKING:
    from ..policy.engine import PolicyEngine
    from ..routing import Router


class Expected(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["allow", "deny"]
    policies: list[str] | None = Field(None, description="the determining policy ids (any order); None: not checked")
    pii_mode: Literal["off", "detect", "mask", "redact", "block"] | None = Field(
        None, description="the PII mode the permits that allow it ask for (@pii; off: none); None: not checked")


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    principal: DescribedPrincipal
    request: DescribedRequest
    expect: dict[str, Literal["allow", "deny"] | Expected] = Field(min_length=1)

    def expected(self) -> dict[str, Expected]:
        return {k: Expected(decision=v) if isinstance(v, str) else v for k, v in self.expect.items()}


class FixtureDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    provider: str = ""
    region: str = ""
    zdr: bool = False
    capabilities: list[str] = Field(default_factory=lambda: ["chat", "tools", "json"])
    tags: list[str] = Field(default_factory=list)

    def resource(self) -> Resource:
        return Resource(self.name, self.provider, self.region, self.zdr, frozenset(self.capabilities),
                        frozenset(self.tags))


class FixtureError(Exception):
    pass


@dataclass(slots=True)
class Fixtures:
    cases: list[tuple[str, Case]]  # (label, case)
    deployments: dict[str, Resource]


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problem(e: ValidationError) -> tuple[str, str]:
    err = e.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in ("Expected", "literal['allow','deny']")))
    msg = "unknown field" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
    return _loc(loc), msg


def parse_fixtures(data: Any) -> Fixtures:
    """The fixture file's content (parsed YAML). Raises FixtureError naming the case and the field."""
    deployments: dict[str, Resource] = {}
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"cases", "deployments"})
        if unknown:
            raise FixtureError(f"unknown top-level field {unknown[0]!r} (expected `cases` and `deployments`)")
        raw_deps = data.get("deployments") or []
        if not isinstance(raw_deps, list):
            raise FixtureError("`deployments` must be a list")
        for i, d in enumerate(raw_deps):
            try:
                fd = FixtureDeployment.model_validate(d)
            except ValidationError as e:
                where, msg = _problem(e)
                raise FixtureError(f"deployments[{i}]: field {where or '(the entry)'}: {msg}") from None
            deployments[fd.name] = fd.resource()
        data = data.get("cases")
    if not isinstance(data, list) or not data:
        raise FixtureError("expected a non-empty list of cases (or a mapping with `cases:`)")
    cases: list[tuple[str, Case]] = []
    for i, raw in enumerate(data):
        label = f"case {i + 1}"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            label += f" ({raw['name']})"
        try:
            cases.append((label, Case.model_validate(raw)))
        except ValidationError as e:
            where, msg = _problem(e)
            raise FixtureError(f"{label}: field {where or '(the case)'}: {msg}") from None
    return Fixtures(cases, deployments)


def run_case(label: str, case: Case, ex: Explanation) -> list[str]:
    """The differences between the expectation and the decision: empty when the case passes."""
    diffs: list[str] = []
    for dep, want in case.expected().items():
        got = ex.of(dep)
        if got is None:
            raise FixtureError(f"{label}: field expect.{dep}: {dep!r} is not a candidate of route "
                               f"{case.request.route!r} (candidates: {', '.join(ex.candidates) or 'none'})")
        decision = "allow" if got.allowed else "deny"
        ids = sorted(got.ids)
        if decision != want.decision or (want.policies is not None and sorted(want.policies) != ids):
            w = want.decision + (f" [{', '.join(sorted(want.policies))}]" if want.policies is not None else "")
            diffs.append(f"{dep}: expected {w}, got {decision} [{', '.join(ids)}]"
                         + (" (evaluation error)" if got.error else ""))
        elif want.pii_mode is not None and want.pii_mode != (got.pii_mode or "off"):
            diffs.append(f"{dep}: expected PII mode {want.pii_mode}, got {got.pii_mode or 'off'}")
    return diffs


def _fail(msg: str) -> NoReturn:
    click.secho(msg, fg="red", err=True)
    sys.exit(2)


def _engine(cfg: Config | None, config_path: str | None, policies: str | None) -> PolicyEngine | None:
    from ..policy import PolicyError

    try:
        if policies is not None:
            from ..policy.engine import PolicyEngine

            files = [f.strip() for f in policies.split(",") if f.strip()]
            if not files:
                _fail("--policies: name at least one .cedar file")
            pc = cfg.policies if cfg is not None else None
            schema = None
            if pc is not None and pc.schema_file is not None and config_path is not None:
                schema = str(Path(config_path).resolve().parent / pc.schema_file)  # relative to the config
            return PolicyEngine.from_files(files, pc.default if pc else "allow", schema,
                                           allow_pii=cfg is None or cfg.pii is not None)
        assert cfg is not None
        if not cfg.policies.enabled:
            return None
        from ..policy.stage import load_engine

        return load_engine(cfg, config_path)
    except PolicyError as e:
        _fail(f"invalid policy: {e}")


def _router(cfg: Config) -> Router:
    from ..catalog import Catalog
    from ..routing import Router
    from .route import _Offline

    return Router(Catalog.from_config(cfg, lambda name, pc: _Offline(name, pc)), cfg)


@click.group("policy")
def policy() -> None:
    """Cedar policies: run fixtures against them."""


@policy.command("test")
@click.argument("fixture_file", metavar="FILE.yaml", type=click.Path(dir_okay=False))
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="the YAML config: its policies, deployments, routes, prices and policies.timezone")
@click.option("--policies", default=None, help="policy files to test instead of the config's, comma-separated")
def test_cmd(fixture_file: str, config_path: str | None, policies: str | None) -> None:
    """Run the cases of FILE.yaml: each is a principal, a request summary and the expected decision per
    deployment. Exit 1 on a mismatch, 2 on a bad fixture file."""
    from zoneinfo import ZoneInfo

    import yaml

    from .main import _load

    if config_path is None and policies is None:
        _fail("give --config CONFIG (its policies) or --policies a.cedar,b.cedar")
    cfg = _load(config_path) if config_path is not None else None
    try:
        text = Path(fixture_file).read_text(encoding="utf-8")
    except OSError as e:
        _fail(f"{fixture_file}: cannot read: {e.strerror}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        _fail(f"{fixture_file}: not valid YAML: {e}")
    try:
        fixtures = parse_fixtures(data)
    except FixtureError as e:
        _fail(f"{fixture_file}: {e}")
    engine = _engine(cfg, config_path, policies)
    router = _router(cfg) if cfg is not None else None
    zone = ZoneInfo(cfg.policies.timezone if cfg is not None else "UTC")
    max_tokens = (cfg if cfg is not None else Config()).ledger.default_max_tokens
    results: list[tuple[str, Explanation, list[str]]] = []
    for label, case in fixtures.cases:  # every case is checked before any result is printed
        try:
            ex = explain(engine, Described(principal=case.principal, request=case.request), router, zone=zone,
                         default_max_tokens=max_tokens, extra=fixtures.deployments)
            results.append((label, ex, run_case(label, case, ex)))
        except DescribeError as e:
            _fail(f"{fixture_file}: {label}: field {e.field}: {e.message}")
        except FixtureError as e:
            _fail(f"{fixture_file}: {e}")
    failed = 0
    for label, ex, diffs in results:
        verdicts = ", ".join(f"{d.deployment}={'allow' if d.allowed else 'deny'}" for d in ex.decisions)
        if diffs:
            failed += 1
            click.echo(click.style("FAIL", fg="red") + f" {label}: action {ex.action}, route {ex.route}, "
                       f"data class {ex.data_class}")
            for d in diffs:
                click.echo(f"  - {d}")
        else:
            click.echo(click.style("PASS", fg="green") + f" {label}: {verdicts}")
    total = len(results)
    summary = f"{total - failed} passed, {failed} failed"
    click.secho(summary, fg="red" if failed else "green")
    if failed:
        sys.exit(1)
