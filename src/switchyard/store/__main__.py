"""``python -m switchyard.store <alembic command> ...``: Alembic's command line with the store's config.

The database is ``$SWITCHYARD_STORE_URL`` (default ``sqlite:///.switchyard/switchyard.db``). See ``db.py``.
"""

from __future__ import annotations

import os
import sys

from alembic.config import CommandLine

from .db import alembic_config, normalize_url

DEFAULT_URL = "sqlite:///.switchyard/switchyard.db"


def main(argv: list[str] | None = None) -> None:
    cli = CommandLine(prog="python -m switchyard.store")
    options = cli.parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    url = normalize_url(os.environ.get("SWITCHYARD_STORE_URL", DEFAULT_URL))
    cfg = alembic_config(url.render_as_string(hide_password=False))
    cfg.cmd_opts = options
    cli.run_cmd(cfg, options)


if __name__ == "__main__":
    main()
