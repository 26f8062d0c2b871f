"""The CLI's first hour: where it finds its config and store, and how it reports a clash."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from switchyard.cli.main import main
from switchyard.cli.spend import plain
from switchyard.config import load_config

CONFIG = """
providers:
  sim: {type: simulated}
deployments:
  - {name: a, provider: sim}
store: sqlite:///data/store.db
governance: {key_secret: "0123456789abcdef0123456789abcdef"}
"""


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    (d / "data").mkdir(parents=True)
    (d / "switchyard.yaml").write_text(CONFIG)
    return d


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), env=env, terminal_width=200)
    return r.exit_code, r.stdout, r.stderr


def test_sqlite_path_resolves_against_the_config_directory(confdir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(confdir / "switchyard.yaml")
    assert cfg.store == f"sqlite:///{(confdir / 'data' / 'store.db').resolve()}"
    (confdir / "abs.yaml").write_text(CONFIG.replace("sqlite:///data/store.db", "sqlite:////tmp/x.db"))
    assert load_config(confdir / "abs.yaml").store == "sqlite:////tmp/x.db"


def test_config_from_env_then_cwd(confdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no switchyard.yaml here
    code, _, errout = run("check", env={"SWITCHYARD_CONFIG": ""})
    assert code == 2 and "switchyard.yaml" in errout
    code, outp, _ = run("check", env={"SWITCHYARD_CONFIG": str(confdir / "switchyard.yaml")})
    assert code == 0 and "OK" in outp
    monkeypatch.chdir(confdir)
    code, outp, _ = run("check", env={"SWITCHYARD_CONFIG": ""})
    assert code == 0 and outp.startswith("switchyard.yaml: OK")
    code, outp, _ = run("teams", "list", "--json", env={"SWITCHYARD_CONFIG": ""})
    assert code == 0 and json.loads(outp) == []
    assert (confdir / "data" / "store.db").exists()  # the store beside the config, from any directory


def test_new_store_warning_and_duplicate_names(confdir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"SWITCHYARD_CONFIG": str(confdir / "switchyard.yaml")}
    code, _, errout = run("teams", "create", "red", "--org", "acme", env=env)
    assert code == 0 and "warning: no store at" in errout and "creating a new, empty one" in errout
    code, _, errout = run("teams", "create", "red", "--org", "acme", env=env)
    assert code == 1
    assert "warning" not in errout  # the store exists now
    assert errout.strip() == "error (409 conflict): a team with that name already exists"
    assert "IntegrityError" not in errout and "Traceback" not in errout


def test_decimals_print_plainly() -> None:
    assert [plain(Decimal(x)) for x in ("0E-8", "0", "1.50000000", "0.00012000", "-2")] == [
        "0.00", "0.00", "1.50", "0.00012", "-2.00"]


def test_spend_report_json_and_csv(confdir: Path) -> None:
    env = {"SWITCHYARD_CONFIG": str(confdir / "switchyard.yaml")}
    code, outp, _ = run("spend", "report", "--json", env=env)
    assert code == 0 and json.loads(outp) == []
    code, outp, _ = run("spend", "report", "--csv", "--group-by", "team", env=env)
    assert code == 0 and outp.splitlines()[0].startswith("team")


def test_key_and_team_lists_in_csv_and_whole_ids(confdir: Path) -> None:
    env = {"SWITCHYARD_CONFIG": str(confdir / "switchyard.yaml")}
    assert run("teams", "create", "a-team-with-a-rather-long-name", "--org", "acme", env=env)[0] == 0
    assert run("users", "create", "ann@example.com", "--team", "a-team-with-a-rather-long-name", env=env)[0] == 0
    code, outp, _ = run("keys", "create", "--user", "ann@example.com", "--json", env=env)
    assert code == 0
    key_id = json.loads(outp)["id"]
    code, outp, _ = run("keys", "list", "--csv", env=env)
    assert code == 0 and outp.splitlines()[0].startswith("id,prefix") and key_id in outp
    code, outp, _ = run("teams", "list", "--csv", env=env)
    assert code == 0 and "a-team-with-a-rather-long-name" in outp
    r = CliRunner().invoke(main, ["keys", "list"], env=env, terminal_width=40)  # a narrow terminal
    assert r.exit_code == 0 and key_id in r.stdout  # the id is whole, not cut
