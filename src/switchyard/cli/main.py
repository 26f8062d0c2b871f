"""The ``switchyard`` command."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from ..config import Config, ConfigError, load_config
from .serve import serve_command

console = Console(stderr=True)


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        console.print(f"[red]{e.source}: invalid configuration[/red]")
        for p in e.problems:
            console.print(f"  {p}", markup=False, highlight=False)
        sys.exit(2)


@click.group()
@click.version_option(package_name="switchyard")
def main() -> None:
    """Switchyard: one governed gateway in front of every model."""


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
def check(config_path: str) -> None:
    """Validate a config file; each problem names the exact key."""
    cfg = _load(config_path)
    enabled = [n for n, p in cfg.providers.items() if p.enabled]
    click.echo(f"{config_path}: OK ({len(enabled)} providers, {len(cfg.deployments)} deployments, "
               f"{len(cfg.routes)} routes)")


main.add_command(serve_command(_load))

from .audit import audit  # noqa: E402  (governance commands; they import nothing from this module)
from .keys import keys  # noqa: E402
from .route import route  # noqa: E402  (switchyard route explain)
from .spend import spend  # noqa: E402  (switchyard spend report)
from .teams import teams  # noqa: E402

main.add_command(keys)
main.add_command(teams)
main.add_command(audit)
main.add_command(route)
main.add_command(spend)

if __name__ == "__main__":
    main()
