"""`ratchet report`: one self-contained HTML file (figures embedded) and the same figures as PNG.

Figures are drawn with matplotlib from `report_data`; the numbers themselves are embedded in
the page as JSON (`<script id="report-data">`), so anyone can check a figure against them. A
bench's report speaks of methods across seeds; any other (the latest study, say) of its studies
one by one. Best-so-far lines are steps: a best holds until the next kept experiment.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ratchet.reports.safe_text import printable  # noqa: E402

Caption = str


def write_report(data: dict[str, Any], output: Path) -> list[Path]:
    """Write `output` (HTML) and its figures as PNG beside it; returns the PNG paths."""
    figures_dir = output.with_name(output.stem + "_figures")
    figures_dir.mkdir(parents=True, exist_ok=True)
    sections, pngs = [], []
    for name, draw in FIGURES.items():
        drawn = draw(data)
        if drawn is None:
            continue
        figure, title, caption = drawn
        path = figures_dir / f"{name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        pngs.append(path)
        encoded = base64.b64encode(path.read_bytes()).decode()
        sections.append(f'<section id="fig-{name}"><h2>{html.escape(title)}</h2>'
                        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{encoded}">'
                        f"<p class=caption>{html.escape(caption)}</p></section>")
    output.write_text(_page(data, sections))
    return pngs


def _best_by_experiment(data: dict[str, Any]) -> tuple[Figure, str, Caption] | None:
    figure, ax = plt.subplots(figsize=(8, 4.5))
    if data["bench"]:
        for method, m in data["methods"].items():
            _band(ax, m["best_by_experiment"], method)
    for s in [] if data["bench"] else data["studies"]:
        _steps(ax, range(len(s["best_curve"])), s["best_curve"], f"study {s['name']}")
    for ref in data["references"]:
        _steps(ax, range(len(ref["best_curve"])), ref["best_curve"], ref["method"], "--")
    ax.set_xlabel("experiment number (0 = baseline)")
    ax.set_ylabel(f"best {data['metric']} so far")
    ax.legend(fontsize=8)
    dashed = " Dashed: reference runs, as logged." if data["references"] else ""
    if not data["bench"]:
        return figure, "Best so far vs experiment", (
            f"The best {data['metric']} kept so far after each experiment: a best holds until "
            f"the next kept experiment replaces it.{dashed}")
    return figure, "Sample efficiency: best so far vs experiment", (
        f"Mean across seeds of the best {data['metric']} kept so far after each experiment, "
        "band = ±1 standard deviation; a study that stopped earlier carries its final value."
        f"{dashed}")


def _best_by_dollar(data: dict[str, Any]) -> tuple[Figure, str, Caption] | None:
    studies = [] if data["bench"] else data["studies"]
    if not data["methods"] or not (data["bench"] or studies):
        return None
    figure, (ax, bars) = plt.subplots(1, 2, figsize=(11, 4.5),
                                      gridspec_kw={"width_ratios": [2, 1]})
    if data["bench"]:
        names = list(data["methods"])
        for method in names:
            _band(ax, data["methods"][method]["best_by_dollar"], method)
        _cost_bars(bars, names, [data["methods"][m]["compute_usd_mean"] for m in names],
                   [data["methods"][m]["tokens_usd_mean"] for m in names], "mean dollars per study")
    else:
        for s in studies:
            _steps(ax, s["dollars"], s["best_curve"], f"study {s['name']}")
        _cost_bars(bars, [s["name"] for s in studies], [s["compute_usd"] for s in studies],
                   [s["tokens_usd"] for s in studies], "dollars spent")
    ax.set_xlabel("dollars spent (compute + tokens)")
    ax.set_ylabel(f"best {data['metric']} so far")
    ax.legend(fontsize=8)
    priced = ("each experiment costs its wall time at [cost].compute_usd_per_hour plus its "
              "tokens at the price table")
    if not data["bench"]:
        return figure, "Best so far vs dollars", (
            f"Left: the best value kept once that many dollars were spent ({priced}). Right: "
            "dollars spent, compute and tokens stacked.")
    return figure, "Cost efficiency: best so far vs dollars", (
        "Left: mean across seeds of the best value kept once that many dollars were spent "
        f"({priced}). Right: mean dollars per study, compute and tokens stacked.")


def _cost_bars(bars: Any, names: list[str], compute: list[float], tokens: list[float],
               label: str) -> None:
    bars.bar(names, compute, label="compute")
    bars.bar(names, tokens, bottom=compute, label="tokens")
    bars.set_ylabel(label)
    bars.tick_params(axis="x", rotation=30, labelsize=8)
    bars.legend(fontsize=8)


def _generalization(data: dict[str, Any]) -> tuple[Figure, str, Caption] | None:
    table = data["generalization"]["table"]
    if not table:
        return None
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for method in sorted({row["method"] for row in table}):
        rows = [r for r in table if r["method"] == method]
        ax.errorbar([r["horizon"] for r in rows], [r["mean"] for r in rows],
                    yerr=[r["std"] for r in rows], marker="o", capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("horizon (× the task's budget)")
    ax.set_ylabel(data["metric"])
    ax.legend(fontsize=8)
    tests = "; ".join(_comparison_text(c) for c in data["generalization"]["comparisons"])
    return figure, "Generalization: the best solutions at longer horizons", (
        "Each study's best solution re-run at each horizon; per seed the runs are averaged, "
        "points are the mean across seeds, bars ±1 standard deviation. Differences between "
        f"methods: Welch's t-test on the per-seed means (scipy). {tests}")


def _holdout(data: dict[str, Any]) -> tuple[Figure, str, Caption] | None:
    points = [(s["method"], p) for s in data["studies"] for p in s["holdout"]]
    if not points:
        return None
    figure, ax = plt.subplots(figsize=(6, 5))
    for method in sorted({m for m, _ in points}):
        mine = [p for m, p in points if m == method]
        ax.scatter([p["value"] for p in mine], [p["holdout"] for p in mine], label=method, s=18)
    ax.set_xlabel(f"search {data['metric']}")
    ax.set_ylabel("holdout metric")
    ax.legend(fontsize=8)
    return figure, "Overfitting: search metric vs holdout of each kept solution", (
        "One point per kept experiment (baseline included): the metric the search optimized "
        "against the holdout command's metric, which no proposer ever sees.")


def _outside_share(data: dict[str, Any]) -> tuple[Figure, str, Caption] | None:
    studies = [] if data["bench"] else data["studies"]
    if not data["methods"] or not (data["bench"] or studies):
        return None
    figure, ax = plt.subplots(figsize=(8, 4))
    for method, m in data["methods"].items() if data["bench"] else ():
        curve = m["outside_share"]
        _steps(ax, curve["x"], curve["mean"], method)
    for s in studies:
        curve = s["outside_share_curve"]
        _steps(ax, range(len(curve)), curve, f"study {s['name']}")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("experiment number")
    ax.set_ylabel("share of improvement OUTSIDE the space")
    ax.legend(fontsize=8)
    across = ", mean across seeds" if data["bench"] else ""
    return figure, "Where the improvement came from, over time", (
        "Share of the cumulative improvement brought by kept changes OUTSIDE the classical "
        "search space (anything but the values of [space] knobs, judged on parsed code)"
        f"{across}; undefined until a first improvement.")


def _band(ax: Any, curve: dict[str, list[float | None]], label: str) -> None:
    """A mean best-so-far curve as steps, with its spread (±1 standard deviation) around it."""
    points = [(x, m, s) for x, m, s in zip(curve["x"], curve["mean"], curve["std"], strict=True)
              if m is not None]
    if not points:
        return
    xs, means, stds = zip(*points, strict=True)
    line = _steps(ax, xs, means, label)
    ax.fill_between(xs, [m - (s or 0) for m, s in zip(means, stds, strict=True)],
                    [m + (s or 0) for m, s in zip(means, stds, strict=True)],
                    alpha=0.2, color=line.get_color(), step="post")


def _steps(ax: Any, xs: Any, ys: Any, label: str, style: str = "-") -> Any:
    """A best-so-far line: each value holds until the next (no slope between experiments);
    points without a value yet are left out."""
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if not points:
        return ax.step([], [], where="post", linestyle=style, label=label)[0]
    px, py = zip(*points, strict=True)
    return ax.step(px, py, where="post", linestyle=style, label=label)[0]


def _comparison_text(c: dict[str, Any]) -> str:
    p = "p n/a (fewer than 2 seeds with spread)" if c["p_value"] is None else \
        f"p = {c['p_value']:.3g}"
    return f"{c['a']} − {c['b']} at {c['horizon']:g}×: {c['gap']:+.4g} ({p})"


FIGURES: dict[str, Callable[[dict[str, Any]], tuple[Figure, str, Caption] | None]] = {
    "best_by_experiment": _best_by_experiment,
    "best_by_dollar": _best_by_dollar,
    "generalization": _generalization,
    "holdout": _holdout,
    "outside_share": _outside_share,
}


def _page(data: dict[str, Any], sections: list[str]) -> str:
    tables = [_final_table(data), _kept_table(data), _scope_table(data), _failure_table(data),
              _generalization_table(data)]
    payload = json.dumps(data).replace("</", "<\\/")
    heading, intro = _heading(data)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ratchet report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;
text-align:right}}th:first-child,td:first-child{{text-align:left}}img{{max-width:100%}}
.caption{{color:#444;font-size:90%}}</style></head><body>
<h1>{html.escape(heading)}</h1>
<p>{html.escape(intro)} Every number below comes from ratchet's store and is embedded in this
page as JSON (<code>report-data</code>).</p>
{''.join(tables)}
{''.join(sections)}
<script type="application/json" id="report-data">{payload}</script>
</body></html>
"""


def _heading(data: dict[str, Any]) -> tuple[str, str]:
    """The page's title and first words: of a bench, or of the studies it shows."""
    metric = f"{data['metric']} ({data['goal']})"
    if data["bench"]:
        return (f"ratchet report: bench {printable(data['bench'])}: {metric}",
                "Each method ran as its own study per seed on the same task under the same "
                "budget.")
    names = [printable(s["name"]) for s in data["studies"]]
    beside = " beside reference logs" if data["references"] else ""
    if len(names) == 1:
        return (f"ratchet report: study {names[0]}: {metric}",
                f"The experiments of study {names[0]} in order{beside}.")
    if names:
        return f"ratchet report: studies {', '.join(names)}: {metric}", \
            f"Each study's experiments in order{beside}."
    return f"ratchet report: {metric}", "Reference logs, as recorded."


def _table(title: str, table_id: str, header: list[str], rows: list[list[str]],
           note: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return (f'<section><h2>{html.escape(title)}</h2><table id="{table_id}"><tr>{head}</tr>'
            f'{body}</table><p class=caption>{html.escape(note)}</p></section>')


def _final_table(data: dict[str, Any]) -> str:
    if not data["bench"]:
        return _study_table(data)
    rows = [[m, str(v["seeds"]), _num(v["final_best_mean"]), _num(v["final_best_std"]),
             f"{v['experiments_mean']:.1f}", f"{v['compute_usd_mean']:.4f}",
             f"{v['tokens_usd_mean']:.4f}"] for m, v in data["methods"].items()]
    rows += [[r["method"], "1", _num(r["final_best"]), "", str(r["experiments"]),
              f"{r['compute_usd']:.4f}", f"{r['tokens_usd']:.4f}"] for r in data["references"]]
    return _table("Final numbers", "final", ["method", "seeds", "final best (mean)", "std",
                                             "experiments", "compute $", "tokens $"], rows,
                  "Final best = the value of the last kept experiment of each study, mean and "
                  "standard deviation across seeds; dollars are means per study.")


def _study_table(data: dict[str, Any]) -> str:
    rows = [[printable(s["name"]), s["method"], _num(s["baseline"]), _num(s["final_best"]),
             str(s["experiments"]), str(s["kept"]), f"{s['compute_usd']:.4f}",
             f"{s['tokens_usd']:.4f}"] for s in data["studies"] + data["references"]]
    return _table("Final numbers", "final", ["study", "method", "baseline", "final best",
                                             "experiments", "kept", "compute $", "tokens $"],
                  rows, "Final best = the value of the last kept experiment; kept = changes "
                  "kept (the baseline not counted); dollars = all the study spent.")


def _kept_table(data: dict[str, Any]) -> str:
    if data["bench"]:
        return ""
    rows = [[printable(s["name"]), str(k["number"]), _num(k["value"]),
             (k["scope"] or "-").upper(), printable(k["description"])]
            for s in data["studies"] + data["references"] for k in s["kept_chain"]]
    return _table("Kept experiments", "kept", ["study", "#", data["metric"], "space",
                                               "description"], rows,
                  "Every kept experiment in order, the baseline first: each is the best until "
                  "the next one. Knob values are shown as the code holds them.")


def _scope_table(data: dict[str, Any]) -> str:
    rows = [[s["name"], s["method"], str(s["kept"]), str(s["kept_in"]), str(s["kept_outside"]),
             _pct(s["gain_in_share"]), _pct(s["gain_outside_share"])]
            for s in data["studies"] + data["references"]]
    return _table("IN / OUTSIDE the classical search space", "scope",
                  ["study", "method", "kept", "kept IN", "kept OUTSIDE", "gain IN",
                   "gain OUTSIDE"], rows,
                  "Kept experiments whose change only moved [space] knob values (IN) or did "
                  "anything else (OUTSIDE), and the share of the study's improvement each "
                  "brought. Imported rows carry no diff and count as OUTSIDE.")


def _failure_table(data: dict[str, Any]) -> str:
    rows = [[m, _pct(v["crash_rate"]), _pct(v["timeout_rate"]), _pct(v["void_rate"]),
             _pct(v["pruned_rate"]), _pct(v["unpromoted_rate"]), f"{v['saved_s_mean']:.0f}"]
            for m, v in data["methods"].items()] if data["bench"] else []
    one_by_one = data["references"] if data["bench"] else data["studies"] + data["references"]
    rows += [[r["method"] if data["bench"] else printable(r["name"]), _pct(r["crash_rate"]),
              _pct(r["timeout_rate"]), _pct(r["void_rate"]), _pct(r["pruned_rate"]),
              _pct(r["unpromoted_rate"]), f"{r['saved_s']:.0f}"] for r in one_by_one]
    per = "mean per study" if data["bench"] else "in all"
    return _table("Failures and early stops", "failures",
                  ["method" if data["bench"] else "study", "crash", "timeout", "void",
                   "pruned mid-run", "not promoted", "compute saved (s)"], rows,
                  "Share of proposed experiments (baseline excluded) that crashed, timed out, "
                  "were voided (a rule broken, a protected file touched, no change), were "
                  "stopped mid-run as hopeless ([pruning]) or stopped after a short run, not "
                  "promoted to the full budget ([fidelity]); and the compute the stopped runs "
                  f"did not spend (a typical full run's time less their own), {per}.")


def _generalization_table(data: dict[str, Any]) -> str:
    g = data["generalization"]
    if not g["table"]:
        return ""
    rows = [[r["method"], f"{r['horizon']:g}", _num(r["mean"]), _num(r["std"]), str(r["seeds"])]
            for r in g["table"]]
    tests = "; ".join(_comparison_text(c) for c in g["comparisons"])
    tests = f"Welch's t-test on per-seed means (scipy): {tests}"
    trends = "; ".join(f"{k}: {v}" for k, v in g["trends"].items())
    return _table("Generalization", "generalization",
                  ["method", "horizon", "mean", "std", "seeds"], rows,
                  f"Tests: {tests}. Gap with horizon: {trends}.")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"
