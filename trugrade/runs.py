"""Looking at finished (or running) runs: list them, compare them, plot their curves.

    trugrade.runs.list_runs("runs")                      # [{"name", "status", ...}, ...]
    table = trugrade.runs.compare(["exp1", "exp2"], metrics=["val_accuracy", "val_loss"])
    pandas.DataFrame(table["metrics"]["rows"], columns=table["metrics"]["columns"])  # in a notebook
    trugrade.runs.plot_curves(["exp1", "exp2"], "val_accuracy", "curves.png")

A run is a folder with run.json and metrics.jsonl (written by trugrade.tracking.RunRecorder);
a run is named by its folder path or by its name inside the runs folder. The structures
returned are plain dicts and lists (no pandas needed). It does not train or modify runs.
"""
import os
import warnings

from .config_schema import metric_mode
from .errors import TrugradeValueError
from .tracking import is_finite_number, read_metrics, read_run

__all__ = ["compare", "format_table", "list_runs", "plot_curves", "resolve_run"]

_NOT_METRICS = {"step", "epoch", "lr", "time", "wall_time"}


def resolve_run(run, directory="runs"):
    """The folder of a run given by path or by name under directory."""
    run = os.fspath(run)
    for candidate in (run, os.path.join(os.fspath(directory), run)):
        if os.path.isfile(os.path.join(candidate, "run.json")):
            return candidate
    known = ", ".join(entry["name"] for entry in list_runs(directory)) or "none"
    raise TrugradeValueError(f"run '{run}': no run.json in '{run}' nor in '{os.path.join(directory, run)}' "
                             f"(runs in {directory}: {known})")


def _epoch_records(records):
    """Per-epoch records (those without a step)."""
    return [r for r in records if "step" not in r]


def _summary(records, metric):
    """(final, best) of a metric over a run's records; None where it was never logged."""
    per_epoch = [r[metric] for r in _epoch_records(records) if is_finite_number(r.get(metric))]
    values = per_epoch or [r[metric] for r in records if is_finite_number(r.get(metric))]
    if not values:
        return None, None
    best = min(values) if metric_mode(metric) == "min" else max(values)
    return values[-1], best


def list_runs(directory="runs"):
    """One dict per run folder under directory (sorted by start time): name, path, status, start and
    end time, architecture, epochs logged and the last per-epoch values of val_loss and
    val_accuracy."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    entries = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not os.path.isfile(os.path.join(path, "run.json")):
            continue
        run = read_run(path)
        records = read_metrics(path)
        epochs = [r["epoch"] for r in _epoch_records(records) if "epoch" in r]
        entry = {"name": run.get("name", name), "path": path, "status": run.get("status"),
                 "start_time": run.get("start_time"), "end_time": run.get("end_time"),
                 "arch": run.get("hyperparameters", {}).get("model.arch"),
                 "epochs": len(epochs)}
        for metric in ("val_loss", "val_accuracy"):
            entry[metric] = _summary(records, metric)[0]
        entries.append(entry)
    entries.sort(key=lambda e: (e["start_time"] or "", e["name"]))
    return entries


def _default_metrics(all_records):
    names = []
    for records in all_records:
        for record in _epoch_records(records):
            for key, value in record.items():
                if key not in _NOT_METRICS and key not in names and is_finite_number(value):
                    names.append(key)
    return names


def compare(runs, metrics=None, directory="runs"):
    """Side by side: {"runs": [names], "metrics": {"columns", "rows"}, "hyperparameters": {"columns", "rows"}}.

    metrics rows: one per run, columns run, then "<metric> final" and "<metric> best" for each
    metric (best is the lowest for *_loss, the highest otherwise; None where not logged);
    default: every per-epoch number logged. hyperparameters rows: one per dotted config key whose
    value differs between the runs, columns key then one per run (run.name is left out).
    """
    if isinstance(runs, (str, os.PathLike)):
        runs = [runs]
    if not runs:
        raise TrugradeValueError("runs compare: give at least one run")
    folders = [resolve_run(run, directory) for run in runs]
    infos = [read_run(folder) for folder in folders]
    all_records = [read_metrics(folder) for folder in folders]
    names = [info.get("name") or os.path.basename(os.path.normpath(folder)) for info, folder in zip(infos, folders)]
    if metrics is None:
        metrics = _default_metrics(all_records)
    elif isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    columns = ["run"] + [f"{m} {kind}" for m in metrics for kind in ("final", "best")]
    rows = []
    for name, records in zip(names, all_records):
        row = [name]
        for metric in metrics:
            row.extend(_summary(records, metric))
        rows.append(row)
    hyper = [info.get("hyperparameters", {}) for info in infos]
    missing = object()
    keys = sorted({key for h in hyper for key in h if key != "run.name"})
    differing = [[key] + [h.get(key) for h in hyper] for key in keys
                 if len({repr(h.get(key, missing)) for h in hyper}) > 1]
    return {"runs": names,
            "metrics": {"columns": columns, "rows": rows},
            "hyperparameters": {"columns": ["key"] + names, "rows": differing}}


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_table(columns, rows):
    """A plain-text table (what `trugrade runs` prints)."""
    cells = [[str(c) for c in columns]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _curve(records, metric):
    """(xs, ys, x label) of a metric: against step where it was logged per step, else against epoch."""
    stepped = [(r["step"], r[metric]) for r in records if "step" in r and is_finite_number(r.get(metric))]
    if stepped:
        return [x for x, _ in stepped], [y for _, y in stepped], "step"
    points = [(r["epoch"], r[metric]) for r in records if "epoch" in r and is_finite_number(r.get(metric))]
    return [x for x, _ in points], [y for _, y in points], "epoch"


def plot_curves(runs, metric, path, directory="runs"):
    """Draws metric against epoch (or step) for each run and returns the file written: a PNG at
    path when matplotlib is installed, otherwise an SVG drawn here at path with the suffix .svg
    (and a warning saying so)."""
    if isinstance(runs, (str, os.PathLike)):
        runs = [runs]
    folders = [resolve_run(run, directory) for run in runs]
    curves = []
    for folder in folders:
        xs, ys, label = _curve(read_metrics(folder), metric)
        curves.append((read_run(folder).get("name") or os.path.basename(folder), xs, ys, label))
    if not any(xs for _, xs, _, _ in curves):
        raise TrugradeValueError(f"plot_curves: no run among {', '.join(map(str, runs))} logged '{metric}'")
    x_label = "step" if any(label == "step" for _, xs, _, label in curves if xs) else "epoch"
    path = os.fspath(path)
    try:
        import matplotlib
    except ImportError:
        svg_path = os.path.splitext(path)[0] + ".svg"
        warnings.warn(f"plot_curves: matplotlib is not installed; wrote an SVG to {svg_path} instead of a PNG",
                      RuntimeWarning, stacklevel=2)
        _write_svg(curves, metric, x_label, svg_path)
        return svg_path
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    figure = Figure(figsize=(7, 4.5), dpi=100)
    axes = figure.add_subplot()
    for name, xs, ys, _ in curves:
        if xs:
            axes.plot(xs, ys, marker="o" if len(xs) < 30 else None, label=name)
    axes.set_xlabel(x_label)
    axes.set_ylabel(metric)
    axes.set_title(metric)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


_SVG_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _write_svg(curves, metric, x_label, path):
    width, height, margin = 700, 450, 60
    xs_all = [x for _, xs, _, _ in curves for x in xs]
    ys_all = [y for _, _, ys, _ in curves for y in ys]
    x0, x1 = min(xs_all), max(xs_all)
    y0, y1 = min(ys_all), max(ys_all)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + (abs(y0) or 1.0) * 0.1

    def px(x):
        return margin + (x - x0) / (x1 - x0) * (width - 2 * margin)

    def py(y):
        return height - margin - (y - y0) / (y1 - y0) * (height - 2 * margin)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{_escape(metric)}</text>',
             f'<line x1="{margin}" y1="{height - margin}" x2="{width - margin}" y2="{height - margin}" stroke="black"/>',
             f'<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{height - margin}" stroke="black"/>',
             f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle">{x_label}</text>',
             f'<text x="{margin - 5}" y="{height - margin}" text-anchor="end">{y0:.4g}</text>',
             f'<text x="{margin - 5}" y="{margin + 4}" text-anchor="end">{y1:.4g}</text>',
             f'<text x="{margin}" y="{height - margin + 15}" text-anchor="middle">{x0:g}</text>',
             f'<text x="{width - margin}" y="{height - margin + 15}" text-anchor="middle">{x1:g}</text>']
    for i, (name, xs, ys, _) in enumerate(curves):
        color = _SVG_COLORS[i % len(_SVG_COLORS)]
        if xs:
            points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{width - margin + 5}" y="{margin + 15 * i}" fill="{color}">{_escape(name)}</text>')
    parts.append("</svg>")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(parts) + "\n")


def _escape(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
