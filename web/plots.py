"""The dashboard's plots as inline SVG, drawn with matplotlib (Agg) in the web process: no JavaScript, no CDN.

Each function takes plain data (what the database holds) and returns an ``<svg>`` string with a ``<title>`` so a
test (or a screen reader) can tell the plots apart. ``svg.hashsalt`` is fixed so the same data give the same SVG.
"""
from __future__ import annotations

import io
from typing import Any, Sequence

STATUS_COLOURS = {"champion": "#1b7837", "retired": "#7f7f7f", "rejected": "#c51b7d", "candidate": "#2166ac",
                 "saving": "#bdbdbd", "failed": "#000000"}


def _figure(width: float = 6.4, height: float = 3.2) -> tuple[Any, Any]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # no display in a server process
    matplotlib.rcParams["svg.hashsalt"] = "prelabel"
    from matplotlib.figure import Figure  # noqa: PLC0415 - a Figure, not pyplot: no global state per thread

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _svg(fig: Any, title: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Title": title, "Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prolog: the SVG goes inline in HTML


def learning_curve(points: Sequence[dict[str, Any]], metric: str) -> str:
    """Each version's ``metric`` (cross-validated) against the labels it was trained on, coloured by status."""
    fig, ax = _figure()
    for status, colour in STATUS_COLOURS.items():
        pts = [p for p in points if p["status"] == status and p.get("score") is not None]
        if pts:
            ax.scatter([p["n_train"] for p in pts], [p["score"] for p in pts], c=colour, label=status, s=24)
    champions = sorted((p for p in points if p.get("score") is not None and p["status"] in ("champion", "retired")),
                       key=lambda p: p["version"])
    if champions:
        ax.plot([p["n_train"] for p in champions], [p["score"] for p in champions], c="#999999", lw=0.8, zorder=0)
    ax.set_xlabel("labels trained on")
    ax.set_ylabel(f"{metric} (cross-validated)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if points:
        ax.legend(loc="lower right", fontsize=8)
    return _svg(fig, "learning curve")


def loss_curves(history: dict[str, Sequence[float]], version: int) -> str:
    """Train and validation loss per epoch of one version (its first cross-validation fold)."""
    fig, ax = _figure()
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        values = list(history.get(key) or [])
        if values:
            ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"v{version}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig, f"loss curves v{version}")


def confusion(labels: Sequence[str], matrix: Sequence[Sequence[int]], version: int) -> str:
    """The confusion matrix as a heat map with the counts written in (rows: true, columns: predicted)."""
    import numpy as np  # noqa: PLC0415

    m = np.asarray(matrix)
    size = 2.4 + 0.45 * len(labels)
    fig, ax = _figure(size + 1.2, size)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = m.max() if m.size else 0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if top and m[i, j] > top / 2 else "black")
    return _svg(fig, f"confusion matrix v{version}")
