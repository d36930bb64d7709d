"""Leaderboards over runs: read each run's report.json, rank by BLEU, test the differences."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from seq2seq.data.corpus import read_lines, write_text_atomic
from seq2seq.errors import DataError
from seq2seq.evaluation.bleu import DEFAULT_TOKENIZER, bleu_tokenizer
from seq2seq.evaluation.plots import plot_validation_curves
from seq2seq.evaluation.significance import paired_bootstrap
from seq2seq.training.metrics_log import read_metrics


@dataclass
class Run:
    folder: Path
    report: dict[str, Any]

    @property
    def name(self) -> str:
        overrides = self.report.get("overrides") or []
        return " ".join(o for o in overrides if not o.startswith("hydra.")) or self.folder.name

    def hypotheses(self) -> Optional[list[str]]:
        path = self.report.get("hypothesis_file")
        if path and not Path(path).is_absolute():
            path = self.folder / path
        return read_lines(path, allow_empty=True) if path and Path(path).is_file() else None


FAILURE = "failed.json"  # what a sweep's failed run leaves instead of report.json


def write_failure(run_dir: Path, error: Exception, overrides: list[str]) -> Path:
    """Record in a sweep's run folder that the run failed, and why (``seq2seq-compare`` lists it)."""
    return write_text_atomic(run_dir / FAILURE, json.dumps(
        {"error": f"{type(error).__name__}: {error}", "overrides": overrides}, indent=2) + "\n")


def find_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Every run folder at or below the given paths: those holding report.json, and the failed
    runs of a sweep (``failed.json``: their report holds ``failed`` and the error)."""
    runs = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path}: no such run or sweep folder")
        for name in ("report.json", FAILURE):
            files = [path / name] if (path / name).is_file() else sorted(path.rglob(name))
            runs += [Run(f.parent, {**json.loads(f.read_text(encoding="utf-8")),
                                    **({"failed": True} if name == FAILURE else {})})
                     for f in files]
    if not any(not run.report.get("failed") for run in runs):
        failed = f" ({len(runs)} failed runs: see their {FAILURE})" if runs else ""
        raise DataError(f"no report.json found under {', '.join(map(str, paths))}{failed}")
    return runs


def ranking_metric(runs: Sequence[Run]) -> str:
    """``bleu`` when every run was scored against the same kind of reference; ``bleu_lc`` when
    some runs write lowercased text (their ``bleu`` is against lowercased references) and others
    write cased text, since only the case-insensitive figure compares the two."""
    lowercased = {bool(run.report.get("references_lowercased")) for run in runs}
    return "bleu_lc" if len(lowercased) > 1 else "bleu"


def bootstrap_tokenizer(best: Run, given: Optional[str] = None, tgt_lang: Optional[str] = None
                        ) -> str:
    """The BLEU tokenizer of the leaderboard's paired bootstrap: ``given`` (``--tokenize``; auto
    picks by ``tgt_lang``, else by the best run's target language), else the one the best run's
    report was scored with (13a for reports that predate the choice)."""
    if given is None:
        return str(best.report.get("bleu_tokenize") or DEFAULT_TOKENIZER)
    return bleu_tokenizer(given, tgt_lang or best.report.get("tgt_lang"), "--tokenize")


def _lowercased(lines: Optional[list[str]]) -> Optional[list[str]]:
    return None if lines is None else [line.lower() for line in lines]


def leaderboard(runs: list[Run], n_bootstrap: int = 1000, tokenize: Optional[str] = None,
                tgt_lang: Optional[str] = None) -> list[dict[str, Any]]:
    """One row per run, best BLEU first; each row says whether it differs significantly from the
    best run (paired bootstrap on the same test set, when both runs kept their outputs; BLEU with
    ``bootstrap_tokenizer(best, tokenize, tgt_lang)``).

    Runs that write lowercased text are ranked with the others on lowercased BLEU, and the
    bootstrap then compares lowercased outputs with lowercased references (see ranking_metric)."""
    runs = [run for run in runs if not run.report.get("failed")]
    metric = ranking_metric(runs)
    runs = sorted(runs, key=lambda r: -r.report[metric])
    # The bootstrap scores against the references the ranked figure used: lowercased ones as
    # soon as any run was scored against them.
    lowercase = any(run.report.get("references_lowercased") for run in runs)
    best = runs[0]
    tokenizer = bootstrap_tokenizer(best, tokenize, tgt_lang)
    best_hyps = best.hypotheses()
    references = read_lines(best.report["test_set"], allow_empty=True) \
        if Path(best.report["test_set"]).is_file() else None
    if lowercase:
        best_hyps, references = _lowercased(best_hyps), _lowercased(references)
    rows = []
    for rank, run in enumerate(runs, start=1):
        r = run.report
        row = {"rank": rank, "run": str(run.folder), "overrides": run.name, "bleu": r["bleu"],
               "bleu_lc": r.get("bleu_lc"), "ranked_by": metric,
               "references_lowercased": bool(r.get("references_lowercased")),
               "bleu_ci": r.get("bleu_ci"), "chrf": r.get("chrf"), "ter": r.get("ter"),
               "bleu_tokenize": r.get("bleu_tokenize") or DEFAULT_TOKENIZER,
               "bootstrap_tokenize": tokenizer,
               "num_params": r.get("num_params"), "train_seconds": r.get("train_seconds"),
               "train_tokens_per_second": r.get("train_tokens_per_second"),
               "p_value_vs_best": None, "significantly_worse": None}
        hyps = _lowercased(run.hypotheses()) if lowercase else run.hypotheses()
        same_test = r.get("test_set") == best.report.get("test_set")
        if run is not best and hyps is not None and best_hyps is not None and references and \
                same_test:
            bleu = paired_bootstrap(hyps, best_hyps, references, n_bootstrap, tokenizer)[0]
            row["p_value_vs_best"] = round(bleu.p_value, 4)
            row["significantly_worse"] = bleu.significant
        rows.append(row)
    return rows


def _mark(row: dict[str, Any]) -> str:
    if row["rank"] == 1:
        return "best"
    if row["significantly_worse"] is None:
        return "not tested"
    return f"worse (p={row['p_value_vs_best']:.3f})" if row["significantly_worse"] else \
        f"not significant (p={row['p_value_vs_best']:.3f})"


def write_leaderboard(rows: list[dict[str, Any]], runs: list[Run], out_dir: str | Path
                      ) -> list[Path]:
    """leaderboard.md, leaderboard.csv and validation_bleu.png in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "leaderboard.csv", table.getvalue())
    fmt = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
    ranked_by = "lowercased test BLEU" if rows[0]["ranked_by"] == "bleu_lc" else "test BLEU"
    lines = ["# Leaderboard", "", f"Sorted by {ranked_by}; the last column is a paired bootstrap "
             f"test (sacrebleu, BLEU, tokenizer {rows[0]['bootstrap_tokenize']}) of each run "
             "against the best one."]
    tokenizers = sorted({row["bleu_tokenize"] for row in rows})
    if len(tokenizers) > 1:
        lines.append(f"The runs' BLEU was scored with different tokenizers ({', '.join(tokenizers)}),"
                     " so their figures do not compare: score their outputs again with "
                     "seq2seq-evaluate --tokenize.")
    if any(row["references_lowercased"] for row in rows):
        lines.append("Runs marked * write lowercased text: their BLEU (and its interval) is "
                     "against lowercased references, the others' against the cased ones; the "
                     "bootstrap compares every run's output lowercased.")
    lines += ["", "| # | run | BLEU | BLEU lowercased | 95% CI | chrF | params | train s | tok/s "
              "| vs best |", "|---|---|---:|---:|---|---:|---:|---:|---:|---|"]
    for row in rows:
        ci = row["bleu_ci"]
        star = " *" if row["references_lowercased"] else ""
        lines.append(
            f"| {row['rank']} | {row['overrides']}{star} | {row['bleu']:.2f} | "
            f"{fmt(row['bleu_lc'], '.2f')} | "
            f"{'' if not ci else f'{ci[0]:.2f}-{ci[1]:.2f}'} | {fmt(row['chrf'], '.2f')} | "
            f"{fmt(row['num_params'], ',')} | {fmt(row['train_seconds'], ',.0f')} | "
            f"{fmt(row['train_tokens_per_second'], ',.0f')} | {_mark(row)} |")
    failed = [run for run in runs if run.report.get("failed")]
    if failed:
        lines += ["", "Failed runs:", ""] + [f"- {run.name} (`{run.folder}`): {run.report['error']}"
                                             for run in failed]
    lines += ["", "![validation BLEU](validation_bleu.png)", ""]
    write_text_atomic(out / "leaderboard.md", "\n".join(lines))
    curves = {}
    for run in runs:
        if run.report.get("failed"):
            continue
        metrics = run.folder / "metrics.csv"
        if metrics.is_file():
            curves[run.name] = [(float(m["elapsed_seconds"]), float(m["bleu"]))
                                for m in read_metrics(metrics) if m["split"] == "valid"]
    plot_validation_curves(curves, out / "validation_bleu.png")
    return [out / "leaderboard.md", out / "leaderboard.csv", out / "validation_bleu.png"]
