"""``switchyard audit verify``: check the audit log's hash chain, signed head and signed checkpoints.

Exit status 0 when the chain is intact, 1 when a record was edited, deleted or reordered (each problem is printed
with the record's sequence number), 2 for a bad config.
"""

from __future__ import annotations

import sys

import click

from ..governance.audit_verify import verify as verify_chain
from .keys import config_option, err, governance, out
from .output import json_option
from .output import print_json as _print_json


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@config_option
@json_option
def verify(config_path: str, as_json: bool) -> None:
    """Recompute every record's hash and link; check the signed head and checkpoints; say where it breaks."""
    with governance(config_path) as gov:
        report = verify_chain(gov.db, gov.signer)
        signed = gov.signer is not None
    if as_json:
        _print_json(report.model_dump(mode="json"))
    elif report.ok:
        out.print(f"[green]OK[/green]: {report.records} records, chain intact up to record {report.last_seq}, "
                  f"{report.checkpoints} signed checkpoints verified", highlight=False)
    else:
        out.print(f"[red]TAMPERED[/red]: {len(report.problems)} problem(s) in {report.records} records",
                  highlight=False)
        for p in report.problems:
            where = f"record {p.seq}" if p.seq is not None else "chain head"
            out.print(f"  {where}: {p.kind}: {p.message}", highlight=False)
    if not signed:
        err.print("warning: no audit key (governance.audit.hmac_key, SWITCHYARD_AUDIT_KEY or a key secret): the "
                  "head and checkpoints could not be checked", highlight=False)
    sys.exit(0 if report.ok else 1)
