"""The ``switchyard`` command."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from ..config import Config, ConfigError, default_config_path, load_config
from .serve import serve_command

#: Subcommands imported only when they run (or --help lists them): `serve` starts without the others' imports.
LAZY_COMMANDS = {
    "keys": "switchyard.cli.keys:keys",
    "teams": "switchyard.cli.teams:teams",
    "audit": "switchyard.cli.audit:audit",
    "route": "switchyard.cli.route:route",
    "spend": "switchyard.cli.spend:spend",
    "pii": "switchyard.cli.pii:pii",
    "policy": "switchyard.cli.policy:policy",
    "router": "switchyard.cli.router:router",
    "models": "switchyard.cli.models:models",
    "workflow": "switchyard.cli.workflow:workflow",
    "prompts": "switchyard.cli.prompts:prompts",
    "experiments": "switchyard.cli.experiments:experiments",
    "orgs": "switchyard.cli.limits:orgs",
    "users": "switchyard.cli.limits:users",
    "budgets": "switchyard.cli.limits:budgets",
    "rate-limits": "switchyard.cli.limits:rate_limits",
}


class LazyGroup(click.Group):
    """A click group whose listed subcommands are imported on first use, and whose every error is one line."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """As click's, but a usage error is one line (``error: Missing option '--org'. (see: switchyard teams
        create --help)``), not the usage text, a hint and the error on three."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as e:
            where = f" (see: {e.ctx.command_path} --help)" if e.ctx is not None else ""
            click.secho(f"error: {e.format_message()}{where}", fg="red", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.secho(f"error: {e.format_message()}", fg="red", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, _, attr = LAZY_COMMANDS[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


def require_file(path: str) -> None:
    """A config file that is not there: say where commands look for one, in one line."""
    if not os.path.exists(path):
        click.secho(f"{path}: no such config file: pass --config FILE, or set $SWITCHYARD_CONFIG (the quickstart's "
                    "is examples/quickstart.yaml)", fg="red", err=True)
        sys.exit(2)


def _load(path: str) -> Config:
    require_file(path)
    try:
        return load_config(path)
    except ConfigError as e:
        click.secho(f"{e.source}: invalid configuration", fg="red", err=True)
        for p in e.problems:
            click.echo(f"  {p}", err=True)
        sys.exit(2)


@click.group(cls=LazyGroup)
@click.version_option(package_name="switchyard")
def main() -> None:
    """Switchyard: one governed gateway in front of every model."""


@main.command()
@click.argument("config_path", metavar="[CONFIG]", required=False, type=click.Path(dir_okay=False))
def check(config_path: str | None) -> None:
    """Validate a config file; each problem names the exact key.

    CONFIG defaults to $SWITCHYARD_CONFIG, else ./switchyard.yaml."""
    config_path = config_path or default_config_path()
    cfg = _load(config_path)
    policies = ""
    if cfg.policies.enabled:
        from ..policy import PolicyError
        from ..policy.stage import load_engine

        try:
            engine = load_engine(cfg, config_path)
        except PolicyError as e:
            click.secho(f"{config_path}: invalid policy", fg="red", err=True)
            click.echo(f"  {e}", err=True)
            sys.exit(2)
        policies = f", {len(engine.policies)} policies"
    workflows = ""
    if cfg.workflows is not None and cfg.workflows.enabled and cfg.workflows.files:
        import os

        from ..workflows.definition import Known, WorkflowInvalid, load_workflow_file

        base = os.path.dirname(os.path.abspath(config_path))
        for f in cfg.workflows.files:
            try:
                load_workflow_file(os.path.join(base, f), Known(tools=set(cfg.workflows.tools),
                                                                conversations=cfg.state is not None))
            except WorkflowInvalid as e:
                click.secho(f"{config_path}: invalid workflow {e.source}", fg="red", err=True)
                for problem in e.problems:
                    click.echo(f"  {problem}", err=True)
                sys.exit(2)
        workflows = f", {len(cfg.workflows.files)} workflows"
    problems = _provider_problems(cfg)
    if problems:
        click.secho(f"{config_path}: serve would refuse it", fg="red", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(2)
    enabled = {n for n, p in cfg.providers.items() if p.enabled}
    deployments = [d for d in cfg.deployments if d.provider in enabled]
    off = len(cfg.deployments) - len(deployments)
    routes = [r for r in cfg.routes.values() if any(d.name in r.target_names for d in deployments)]
    skipped = f"; {off} deployments of disabled providers left out" if off else ""
    click.echo(f"{config_path}: OK ({len(enabled)} providers, {len(deployments)} deployments, "
               f"{len(routes)} routes{policies}{workflows}{skipped})")


def _provider_problems(cfg: Config) -> list[str]:
    """Build every enabled provider as ``serve`` does, and close it: a missing extra (botocore for bedrock,
    llama-cpp-python for llamacpp) or a missing model file is reported here rather than at start-up."""
    import asyncio

    from ..providers import build_provider

    problems: list[str] = []
    for name, pc in cfg.providers.items():
        if not pc.enabled:
            continue
        try:
            provider = build_provider(name, pc)
        except ValueError as e:
            problems.append(str(e))
            continue
        asyncio.run(provider.aclose())
    return problems


main.add_command(serve_command(_load))

if __name__ == "__main__":
    main(prog_name="switchyard")
