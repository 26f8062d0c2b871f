"""``switchyard router train|score|eval``: the learned router (see :mod:`switchyard.routing.auto.learned`)."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click
import orjson

err = click.echo


def _fail(message: str) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)


@click.group()
def router() -> None:
    """The learned router: train it on outcomes, score prompts, evaluate it."""


@router.command("train")
@click.option("--outcomes", "paths", multiple=True, type=click.Path(dir_okay=False),
              help="RouteLLM-format outcome CSVs (repeat the option, or list the files after it)")
@click.argument("more", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--strong", required=True, help="the strong model's column (with --from-store: its deployment)")
@click.option("--weak", required=True, help="the weak model's column (with --from-store: its deployment)")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="the router file to write")
@click.option("--strong-share", default=0.3, show_default=True, type=click.FloatRange(0, 1),
              help="the threshold sends this share of the training prompts to the strong model")
@click.option("--exclude", "exclude", default=None, type=click.Path(dir_okay=False),
              help='JSON lines {"eval_prompt": ...} (RouteLLM\'s contaminated_prompts.jsonl) or {"prompt": ...}: '
                   "prompts to leave out")
@click.option("--from-store", "config_path", default=None, type=click.Path(dir_okay=False),
              help="train from the feedback stored by the gateway of this config instead of CSVs")
def train_command(paths: tuple[str, ...], more: tuple[str, ...], strong: str, weak: str, out_path: str,
                  strong_share: float, exclude: str | None, config_path: str | None) -> None:
    """Train P(strong model needed | prompt) from recorded outcomes."""
    from ..routing.auto.learned import train

    if config_path is not None:
        outcomes, emb, texts = _from_store(config_path, weak)
    else:
        outcomes, emb, texts = _read(paths + more, strong, weak, exclude), None, None
    try:
        r = train(outcomes, emb, texts=texts, meta={"strong": strong, "weak": weak})
    except ValueError as e:
        _fail(str(e))
    # the threshold from the scores of the training prompts out of fold (their own scores would flatter them)
    r.threshold = r.threshold_for(strong_share)
    r.meta["strong_share"] = strong_share
    r.save(out_path)
    click.echo(f"{out_path}: trained on {len(outcomes)} prompts ({len(set(outcomes.family.tolist()))} families); "
               f"threshold {r.threshold:.4f} sends {strong_share:.0%} of them (scored out of fold) to {strong}")


def _read(paths: tuple[str, ...], strong: str, weak: str, exclude: str | None = None) -> Any:
    from ..routing.auto.outcomes import OutcomesError, read_excluded, read_outcomes

    if not paths:
        _fail("give the outcome files: --outcomes A.csv [B.csv ...]")
    try:
        outcomes = read_outcomes(paths, strong, weak)
        if exclude is not None:
            dropped = read_excluded(exclude)
            kept = outcomes.without(dropped)
            err(f"--exclude: left out {len(outcomes) - len(kept)} of {len(outcomes)} prompts", err=True)
            outcomes = kept
    except OutcomesError as e:
        _fail(str(e))
    if len(outcomes) == 0:
        _fail("--exclude left no prompts")
    return outcomes


def _from_store(config_path: str, weak: str) -> Any:
    """Outcomes from stored feedback on calls the weak deployment served: its score is the weak outcome, and the
    strong model is presumed to succeed (a bad rating means the strong model was needed)."""
    import numpy as np

    from ..governance.feedback import read_feedback
    from ..routing.auto.embedder import DIM
    from ..routing.auto.learned import embed_prompts
    from ..routing.auto.outcomes import Outcomes
    from ..store.db import create_engine_for, migrate
    from .keys import load

    cfg = load(config_path)
    engine = create_engine_for(cfg.store)
    try:
        migrate(engine)
        with engine.connect() as conn:
            rows = read_feedback(conn, weak)
    except Exception as e:  # the store is unreachable or broken: say so, no traceback
        _fail(f"the store cannot be read ({type(e).__name__})")
    finally:
        engine.dispose()
    rows = [r for r in rows if r[0] is not None or (r[1] is not None and len(r[1]) == 4 * DIM)]
    if not rows:
        _fail(f"no stored feedback with a prompt or an embedding on calls served by {weak!r}")
    need = [r[0] or "" for r in rows if r[1] is None]
    computed = iter(embed_prompts(need)) if need else iter(())
    emb = np.vstack([np.frombuffer(r[1], dtype="<f4") if r[1] is not None else next(computed) for r in rows])
    families = sorted({r[3] for r in rows})
    outcomes = Outcomes([r[0] or "" for r in rows], np.asarray([r[2] for r in rows]), np.ones(len(rows)),
                        np.asarray([families.index(r[3]) for r in rows], dtype=np.int64), families)
    return outcomes, emb, [r[0] for r in rows]


@router.command("score")
@click.option("--router", "router_path", required=True, type=click.Path(dir_okay=False))
@click.option("--prompts", "prompts_path", required=True, type=click.Path(dir_okay=False),
              help='JSON lines {"prompt": "..."}; "-" for standard input')
def score_command(router_path: str, prompts_path: str) -> None:
    """Write one line {"score": p} per prompt, in order: P(the strong model is needed)."""
    from ..routing.auto.learned import LearnedRouter, RouterFormatError

    try:
        r = LearnedRouter.load(router_path)
    except (RouterFormatError, OSError) as e:
        _fail(str(e))
    try:
        fh = sys.stdin if prompts_path == "-" else open(prompts_path, encoding="utf-8")  # noqa: SIM115
    except OSError as e:
        _fail(f"{prompts_path}: cannot be read ({e.strerror})")
    prompts: list[str] = []
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                _fail(f"{prompts_path}:{n}: not JSON")
            if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
                _fail(f'{prompts_path}:{n}: expected an object {{"prompt": "..."}} with a string prompt')
            prompts.append(obj["prompt"])
    out = sys.stdout.buffer
    for start in range(0, len(prompts), 512):
        for p in r.score(prompts[start:start + 512]):
            out.write(orjson.dumps({"score": round(float(p), 6)}) + b"\n")
    out.flush()


@router.command("eval")
@click.option("--outcomes", "paths", multiple=True, type=click.Path(dir_okay=False))
@click.argument("more", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--strong", required=True, help="the strong model's column")
@click.option("--weak", required=True, help="the weak model's column")
@click.option("--exclude", "exclude", default=None, type=click.Path(dir_okay=False),
              help='JSON lines {"eval_prompt": ...} (RouteLLM\'s contaminated_prompts.jsonl) or {"prompt": ...}: '
                   "prompts to leave out")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(2, 100))
@click.option("--families/--no-families", default=True, show_default=True,
              help="also hold out whole families (outcome files), when there are at least --folds of them")
@click.option("--bootstrap", "rounds", default=200, show_default=True, type=click.IntRange(10, 100_000))
@click.option("--seed", default=0, show_default=True)
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="write the cost-quality curves as a PNG (needs matplotlib: the bench extra)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def eval_command(paths: tuple[str, ...], more: tuple[str, ...], strong: str, weak: str, exclude: str | None,
                 folds: int,
                 families: bool, rounds: int, seed: int, plot_path: str | None, as_json: bool) -> None:
    """Cross-validate the learned router against random, prompt length and the oracle: APGR, CPT(50%),
    CPT(80%), with bootstrap 95% intervals."""
    from ..routing.auto.evaluate import cross_validate, plot
    from ..routing.auto.learned import embed_prompts

    outcomes = _read(paths + more, strong, weak, exclude)
    if outcomes.strong.mean() == outcomes.weak.mean():
        _fail("the two models have the same quality on these outcomes: there is no gap to recover")
    emb = embed_prompts(outcomes.prompts)
    splits = ["prompts"] + (["families"] if families and len(outcomes.families) >= folds else [])
    try:
        evals = [cross_validate(outcomes, folds=folds, split=s, seed=seed, embeddings=emb) for s in splits]
    except ValueError as e:
        _fail(str(e))
    reports = [ev.report(rounds=rounds, seed=seed) for ev in evals]
    if plot_path is not None:
        try:
            plot(evals, plot_path)
        except RuntimeError as e:
            _fail(str(e))
    if as_json:
        click.echo(orjson.dumps({"strong": strong, "weak": weak, "evaluations": reports},
                                option=orjson.OPT_INDENT_2).decode())
        return
    for rep in reports:
        click.echo(f"held out: {rep['split']} ({rep['folds']} folds), {rep['prompts']} prompts; quality: weak "
                   f"{rep['weak_quality']:.4f}, strong {rep['strong_quality']:.4f}")
        click.echo(f"  {'router':<14}{'APGR':>26}{'CPT(50%)':>26}{'CPT(80%)':>26}")
        for name, m in rep["routers"].items():
            cells = "".join(f"{_ci(m[k]):>26}" for k in ("apgr", "cpt50", "cpt80"))
            click.echo(f"  {name:<14}{cells}")
    if plot_path is not None:
        click.echo(f"cost-quality curves: {plot_path}")


def _ci(m: dict[str, float]) -> str:
    return f"{m['value']:.4f} [{m['low']:.4f}, {m['high']:.4f}]"
