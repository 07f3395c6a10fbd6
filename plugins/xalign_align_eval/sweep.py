"""Line plot of the ``align`` task's layer sweep (``layer: all``): AER per hidden state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def plot_sweep(
    layers: Sequence[int],
    aer: Mapping[str, Sequence[float]],
    average: Sequence[float],
    path: Path,
    title: str = "align AER per layer",
) -> Path:
    """One line per gold set (AER at each of ``layers``), the average bold, the best layer (lowest
    average) a dashed line.

    ``aer[set][k]`` is the AER at ``layers[k]`` (a fraction; plotted in %). Writes a PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, values in aer.items():
        ax.plot(layers, [100 * v for v in values], marker=".", linewidth=1, alpha=0.8, label=name)
    avg = [100 * v for v in average]
    ax.plot(layers, avg, color="black", linewidth=2.2, marker="o", label="average")
    best = min(range(len(layers)), key=lambda k: average[k])
    ax.axvline(
        layers[best],
        color="grey",
        linestyle="--",
        linewidth=1,
        label=f"best: layer {layers[best]} ({avg[best]:.1f} %)",
    )
    ax.set_xticks(list(layers))
    ax.set_xlabel("hidden state (0 = embeddings)")
    ax.set_ylabel("AER (%), lower is better")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
