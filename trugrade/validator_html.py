"""The validator's HTML report: one self-contained page (no scripts, no external files).

Counts per severity and split, one bar chart per split of the samples per class (inline SVG),
then each finding with its fix, thumbnails of its first files (PNG encoded here with zlib,
as base64 data URIs) and the list of its files. Not here: the checks (trugrade/validator.py).
"""
import base64
import html
import os
import struct
import zlib

import numpy as np

from .data import read_image
from .errors import TrugradeError

THUMB_SIDE = 96
COLORS = {"fatal": "#b3261e", "warning": "#b26a00", "info": "#3b6ea5"}
SPLIT_COLORS = {"train": "#3b6ea5", "val": "#6a9f3b", "test": "#a5673b"}


def png_bytes(pixels):
    """PNG file bytes of a uint8 array [H, W] (grey) or [H, W, 3] (RGB)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    color_type = 2 if pixels.ndim == 3 else 0
    rows = pixels.reshape(height, -1)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def thumbnail(path, side=THUMB_SIDE):
    """A small uint8 picture of an image file ([h, w] or [h, w, 3]), or None when it does not decode."""
    try:
        image = read_image(path)
    except (TrugradeError, OSError):
        return None
    source_dtype = image.dtype
    image = image.astype(np.float64)
    if source_dtype != np.uint8 and image.size:
        lo, hi = float(image.min()), float(image.max())
        if not (lo >= 0 and hi <= 255):
            image = (image - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
        elif hi <= 1.0:
            image = image * 255.0
    channels, height, width = image.shape
    scale = min(1.0, side / max(height, width, 1))
    h, w = max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    ys = (np.arange(h) * height // h).astype(np.int64)
    xs = (np.arange(w) * width // w).astype(np.int64)
    small = image[:, ys][:, :, xs]
    small = small[:3] if channels >= 3 else small[:1]
    out = np.clip(small + 0.5, 0, 255).astype(np.uint8)
    return out[0] if out.shape[0] == 1 else np.transpose(out, (1, 2, 0))


def _data_uri(path):
    pixels = thumbnail(path)
    if pixels is None:
        return None
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode("ascii")


def _bar_chart(names, counts, split, unit):
    """An inline SVG of horizontal bars, one per class."""
    top = max(max(counts, default=0), 1)
    row, label_w, bar_w = 18, 160, 300
    height = row * len(names) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 80}" height="{height}" '
             f'role="img" aria-label="{html.escape(split)} {unit} per class">',
             f'<text x="0" y="14" font-size="13" font-weight="bold">{html.escape(split)} ({unit})</text>']
    for k, (name, count) in enumerate(zip(names, counts)):
        y = 22 + k * row
        w = bar_w * count / top
        shown = name if len(name) <= 24 else name[:23] + "\u2026"
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">'
                     f'{html.escape(shown)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" '
                     f'fill="{SPLIT_COLORS.get(split, "#555")}"/>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 12}" font-size="11">{count}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render(report, thumbnails=8):
    e = html.escape
    counts = report.counts()
    stats = report.stats
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>trugrade validation: "
           f"{e(str(report.root))}</title><style>"
           "body{font-family:sans-serif;margin:24px;max-width:1100px}"
           ".badge{color:#fff;padding:2px 8px;border-radius:4px;font-size:12px;text-transform:uppercase}"
           ".finding{border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:12px 0}"
           ".thumbs img,.thumbs .missing{height:96px;margin:4px;border:1px solid #ccc;vertical-align:top}"
           ".thumbs .missing{display:inline-block;width:96px;background:#eee;font-size:11px;text-align:center}"
           "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}"
           "details{margin-top:6px}code{font-size:12px}</style></head><body>",
           f"<h1>Dataset validation</h1><p><code>{e(str(report.root))}</code>: task {e(str(report.task))}, "
           f"{stats.get('n_samples', 0)} samples, validated in {stats.get('seconds', 0):.2f} s</p>",
           "<h2>Summary</h2><p>" + " ".join(
               f"<span class='badge' style='background:{COLORS[s]}'>{s}: {counts[s]}</span>" for s in counts) + "</p>"]
    splits = stats.get("splits", {})
    if splits:
        out.append("<table><tr>" + "".join(f"<th>{e(sp)}</th>" for sp in splits) + "</tr><tr>" +
                   "".join(f"<td>{n}</td>" for n in splits.values()) + "</tr></table>")
    if stats.get("class_counts"):
        out.append("<h2>Classes</h2>")
        if stats.get("imbalance_ratio"):
            out.append(f"<p>Imbalance ratio (largest / smallest class): {stats['imbalance_ratio']:.2f}</p>")
        for split, values in stats["class_counts"].items():
            if sum(values):
                out.append(_bar_chart(stats["class_names"], values, split, stats.get("class_unit", "images")))
    out.append(f"<h2>Findings ({len(report.findings)})</h2>")
    if not report.findings:
        out.append("<p>No problems found.</p>")
    for f in report.findings:
        out.append(f"<div class='finding'><span class='badge' style='background:{COLORS[f.severity]}'>"
                   f"{f.severity}</span> <b>{e(f.check)} / {e(f.kind)}</b><p>{e(f.message)}</p>"
                   f"<p><i>Fix:</i> {e(f.fix)}</p>")
        if f.files and thumbnails:
            out.append("<div class='thumbs'>")
            for rel in f.files[:thumbnails]:
                uri = _data_uri(os.path.join(str(report.root), rel))
                title = e(rel, quote=True)
                out.append(f"<img src='{uri}' title='{title}' alt='{title}'>" if uri else
                           f"<span class='missing' title='{title}'>cannot be decoded</span>")
            out.append("</div>")
        if f.files:
            messages = f.details.get("messages") or f.details.get("reasons") or {}
            items = "".join(f"<li><code>{e(p)}</code>" + (f": {e(messages[p])}" if p in messages else "") + "</li>"
                            for p in f.files[:1000])
            more = f"<li>... and {len(f.files) - 1000} more</li>" if len(f.files) > 1000 else ""
            out.append(f"<details><summary>{len(f.files)} file(s)</summary><ul>{items}{more}</ul></details>")
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out)


def label_issues_section(root, result, shown=50):
    """An HTML section for a training run's report: the likely label errors of
    trugrade.validator.run_label_issues (`result`), most suspicious first, with thumbnails."""
    e = html.escape
    issues = result["issues"]
    out = [f"<h2>Likely label errors ({len(issues)})</h2>",
           f"<p>{e(result['method'])}; {result['samples_scored']} samples of the {e(', '.join(result['splits']))} "
           "split(s) scored by the trained model. Review these samples, most suspicious first; training-split "
           "scores are in-sample, so the model may have memorised some wrong labels.</p>"]
    if not issues:
        out.append("<p>No sample's label is contradicted with high confidence.</p>")
        return "\n".join(out)
    out.append("<table><tr><th>image</th><th>file</th><th>split</th><th>given</th><th>model says</th>"
               "<th>margin</th></tr>")
    for row in issues[:shown]:
        uri = _data_uri(os.path.join(str(root), row["path"]))
        image = f"<img src='{uri}' style='height:64px'>" if uri else "cannot be decoded"
        out.append(f"<tr><td>{image}</td><td><code>{e(row['path'])}</code></td><td>{e(row['split'])}</td>"
                   f"<td>{e(row['given'])}</td><td>{e(row['predicted'])}</td><td>{row['margin']:.3f}</td></tr>")
    out.append("</table>")
    if len(issues) > shown:
        out.append(f"<p>... and {len(issues) - shown} more in label_issues.json</p>")
    return "\n".join(out)
