"""The CLI's first hour: where it finds its config and store, and how it reports a clash."""

from __future__ import annotations

import csv
import io
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


def test_every_error_is_one_line(confdir: Path) -> None:
    env = {"SWITCHYARD_CONFIG": str(confdir / "switchyard.yaml")}
    code, _, errout = run("teams", "create", "red", env=env)  # --org missing: a usage error
    assert code == 2 and errout.strip().splitlines() == [
        "error: Missing option '--org'. (see: main teams create --help)"]
    code, _, errout = run("keys", "create", "--user", "nobody@example.com", env=env)
    assert code == 1 and errout.strip().splitlines()[-1] == "error: no user 'nobody@example.com'"
    code, _, errout = run("keys", "revoke", "vk_" + "0" * 20, env=env)
    assert code == 1 and errout.strip().splitlines()[-1] == f"error: No key with id 'vk_{'0' * 20}'."
    code, _, errout = run("budgets", "create", "--scope", "team", "--for", "red", env=env)
    assert code == 2 and len(errout.strip().splitlines()) == 1 and "give --usd or --tokens" in errout
    code, _, errout = run("check", str(confdir / "nope.yaml"))
    assert code == 2 and errout.strip().splitlines() == [
        f"{confdir / 'nope.yaml'}: no such config file: pass --config FILE, or set $SWITCHYARD_CONFIG (the "
        "quickstart's is examples/quickstart.yaml)"]


def test_lists_take_csv_and_never_cut_ids(confdir: Path) -> None:
    env = {"SWITCHYARD_CONFIG": str(confdir / "switchyard.yaml")}
    assert run("teams", "create", "red", "--org", "acme", env=env)[0] == 0
    assert run("teams", "member-budget", "red", "--usd", "0.00001", "--period", "daily", env=env)[0] == 0
    assert run("users", "create", "ann@example.com", "--team", "red", env=env)[0] == 0
    code, outp, _ = run("budgets", "status", "--csv", env=env)
    copy = next(r for r in csv.DictReader(io.StringIO(outp)) if r["scope"] == "user")
    assert (copy["for"], copy["max_usd"], copy["spent_usd"]) == ("ann@example.com", "0.00001", "0.00")
    r = CliRunner().invoke(main, ["budgets", "status"], env=env)  # a pipe: the whole table, one line per row
    assert r.exit_code == 0 and copy["budget_id"] in r.stdout and "…" not in r.stdout and "E-" not in r.stdout
    for args in (["prompts", "list", "--csv"], ["experiments", "list", "--csv"], ["models", "--csv"],
                 ["budgets", "list", "--csv"], ["rate-limits", "list", "--csv"], ["orgs", "list", "--csv"]):
        code, outp, errout = run(*args, env=env)
        assert code == 0, (args, errout)
        assert outp.splitlines()[0].startswith("id,"), (args, outp)


def test_a_narrow_terminal_folds_ids_and_never_cuts_them(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    from switchyard.cli import output

    monkeypatch.setattr(output.sys.stdout, "isatty", lambda: True, raising=False)
    ids = ["bud_4fcf10ba3dcf7b45d822~cff264d013e3", "vk_" + "a" * 20]
    rows = [{"id": i, "name": "a rather long name for a budget", "max_usd": Decimal("0E-8")} for i in ids]
    for width in (80, 30):  # room for the ids on one line (the name wraps instead); a terminal too narrow for them
        monkeypatch.setattr(output, "console", lambda width=width: Console(width=width, force_terminal=False))
        output.emit(rows, ["id", "name", "max_usd"], False, False, amounts=["max_usd"])
        printed = capsys.readouterr().out
        assert "…" not in printed and "0E-8" not in printed and "0.00" in printed
        cells = "".join(line.split("│")[1].strip() for line in printed.splitlines() if line.startswith("│"))
        assert all(i in cells for i in ids)  # each id whole, on one line or folded over several
        assert all((i in printed) == (width == 80) for i in ids)  # on one line whenever they fit


def test_route_explain_prints_json() -> None:
    root = Path(__file__).resolve().parents[1]
    r = CliRunner().invoke(main, ["route", "explain", "--model", "fast", "--json", "--config",
                                  str(root / "examples" / "quickstart.yaml")],
                           env=dict.fromkeys(("OPENAI_API_KEY", "GROQ_API_KEY", "DEEPSEEK_API_KEY", "MISTRAL_API_KEY",
                                              "TOGETHER_API_KEY", "OPENROUTER_API_KEY"), ""))
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["route"], [c["deployment"] for c in doc["candidates"]]) == ("fast", ["sim-small"])
