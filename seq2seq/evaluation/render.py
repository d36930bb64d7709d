"""Render a report dict as Markdown or as self-contained HTML, from one list of sections."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, NamedTuple

SCORE_KEYS = {"bleu", "chrf", "ter", "bleu_lc", "bleu_signature", "chrf_signature",
              "ter_signature", "bleu_lc_signature", "bleu_detail", "signature", "test_set",
              "num_sentences", "bleu_ci", "chrf_ci", "ter_ci", "learning_curve", "length_by",
              "bleu_by_length_png", "bootstrap_resamples", "references_lowercased", "recased",
              "bleu_tokenize"}


class Table(NamedTuple):
    header: list[str]
    rows: list[list[Any]]


class Image(NamedTuple):
    path: str
    alt: str


class Section(NamedTuple):
    title: str
    blocks: list  # str (a paragraph), Table or Image


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) for v in value):
        return f"[{value[0]:.2f}, {value[1]:.2f}]"
    return "" if value is None else str(value)


def sections(report: dict[str, Any]) -> list[Section]:
    """The report's content, in order, independent of the output format."""
    out = []
    scores = Table(["metric", "score", "95% CI", "signature"], [
        ["BLEU", report["bleu"], report.get("bleu_ci"), f"`{report['bleu_signature']}`"],
        ["chrF", report["chrf"], report.get("chrf_ci"), f"`{report['chrf_signature']}`"],
        ["TER (lower is better)", report["ter"], report.get("ter_ci"),
         f"`{report['ter_signature']}`"],
        ["BLEU, lowercased", report["bleu_lc"], None, f"`{report['bleu_lc_signature']}`"]])
    references = "the raw references"
    if report.get("references_lowercased"):
        references = ("the lowercased references (the model reads and writes lowercased text: "
                      "its tokenizer folds case)")
    elif report.get("recased"):
        references += (" (the model reads and writes lowercased text; its output is recased by a "
                       "casing model fitted on the training targets, seq2seq/recase.py)")
    out.append(Section("Scores", [
        f"Test set: `{report['test_set']}` ({report['num_sentences']:,} sentences). sacrebleu on "
        f"detokenized text against {references}; BLEU tokenizer "
        f"`{report.get('bleu_tokenize', '13a')}` (`tok:` in its signature); intervals from "
        f"{report.get('bootstrap_resamples', 0):,} bootstrap resamples.",
        scores, f"BLEU detail: `{report['bleu_detail']}`"]))
    if report.get("baseline"):
        base = report["baseline"]
        out.append(Section(f"Compared with {base['name']}", [
            "Paired bootstrap resampling (sacrebleu): p is the chance of a difference this large "
            "if the systems were equally good.",
            Table(["metric", "this system", "baseline", "p-value", "significant (p < 0.05)"],
                  [[r["metric"], r["system"], r["baseline"], f"{r['p_value']:.4f}",
                    "yes" if r["significant"] else "no"] for r in base["results"]])]))
    if report.get("bleu_by_length"):
        out.append(Section(f"BLEU by {report.get('length_by', 'source')} length", [
            Table(["length (words)", "sentences", "BLEU"],
                  [[r["bucket"], r["sentences"], r["bleu"]] for r in report["bleu_by_length"]]),
            Image(report["bleu_by_length_png"], "BLEU by length")]))
    if report.get("attention_plots"):
        blocks: list = []
        for plot in report["attention_plots"]:
            blocks += [f"{plot['source']} → {plot['hypothesis']}", Image(plot["png"], "attention")]
        out.append(Section("Attention", blocks))
    if report.get("learning_curve"):
        out.append(Section("Learning curve", [Image(report["learning_curve"], "learning curve")]))
    for kind in ("best", "worst"):
        rows = report.get("samples", {}).get(kind)
        if rows:
            out.append(Section(f"{kind.capitalize()} translations by sentence chrF", [Table(
                ["line", "chrF", "source", "reference", "hypothesis"],
                [[r["line"], r["chrf"], r["source"], r["reference"], r["hypothesis"]]
                 for r in rows])]))
    return out + run_sections(report, SCORE_KEYS)


def run_sections(report: dict[str, Any], score_keys: set[str]) -> list[Section]:
    """The "Run" facts (every scalar not in ``score_keys``, data files, overrides) and versions."""
    out = []
    facts = [[k, v] for k, v in report.items()
             if k not in score_keys and not isinstance(v, (dict, list))]
    # the validation figures of the tested step's run, e.g. "best_valid bleu"
    facts += [[f"best_valid {k}", v] for k, v in (report.get("best_valid") or {}).items()]
    blocks: list[Table | str] = [Table(["fact", "value"], facts)] if facts else []
    if report.get("data_files"):
        blocks.append(Table(["data file", "lines"], [[f"`{p}`", n] for p, n in
                                                     report["data_files"].items()]))
    if report.get("overrides"):
        blocks.append("Config overrides: " + " ".join(f"`{o}`" for o in report["overrides"]))
    if blocks:
        out.append(Section("Run", blocks))
    if report.get("versions"):
        out.append(Section("Versions", [", ".join(f"{k} {v}" for k, v in
                                                  report["versions"].items())]))
    return out


def _md_cell(value: Any) -> str:
    return _fmt(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict[str, Any], content: list[Section] | None = None) -> str:
    """Markdown of ``content`` (default: the translation report's sections)."""
    lines = ["# Evaluation report", ""]
    for section in content if content is not None else sections(report):
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                lines.append("| " + " | ".join(block.header) + " |")
                lines.append("|" + "---|" * len(block.header))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            elif isinstance(block, Image):
                lines.append(f"![{block.alt}]({block.path})")
            else:
                lines.append(block)
            lines.append("")
    return "\n".join(lines)


def _html_text(value: Any) -> str:
    text = html.escape(_fmt(value))
    # `code` spans as in the Markdown version
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(report: dict[str, Any], folder: Path, content: list[Section] | None = None) -> str:
    """One HTML file with the images embedded, readable without the run folder."""
    body = ["<h1>Evaluation report</h1>"]
    for section in content if content is not None else sections(report):
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
                rows = "".join("<tr>" + "".join(f"<td>{_html_text(c)}</td>" for c in row) + "</tr>"
                               for row in block.rows)
                body.append(f"<table><tr>{head}</tr>{rows}</table>")
            elif isinstance(block, Image):
                path = folder / block.path
                if path.is_file():
                    data = base64.b64encode(path.read_bytes()).decode()
                    body.append(f'<img alt="{html.escape(block.alt)}" '
                                f'src="data:image/png;base64,{data}">')
            else:
                body.append(f"<p>{_html_text(block)}</p>")
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Evaluation report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
