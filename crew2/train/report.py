"""A training run's report in its folder: metrics.csv and PNG plots, rewritten after every epoch."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def write(out: Path, history: list[dict[str, float]], keys: list[str], confusion: np.ndarray) -> None:
    """metrics.csv (one row per epoch), losses.png, key_f1.png and confusion.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(dict.fromkeys(k for row in history for k in row))
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(history)

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name in ("train_keys", "train_det", "train_box", "train_cls", "train_dfl"):
        if name in columns:
            axes[0].plot(epochs, [row.get(name, np.nan) for row in history], marker="o", label=name[6:])
    axes[0].set_title("training losses")
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    for name in ("val_f1", "val_constant_f1", "val_exact_match", "val_map50", "val_map50_95"):
        if name in columns:
            axes[1].plot(epochs, [row.get(name, np.nan) for row in history], marker="o", label=name[4:])
    axes[1].set_title("validation")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylim(0, 1)
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k in keys:
        ax.plot(epochs, [row.get(f"val_{k}_f1", np.nan) for row in history], marker="o", label=k.upper())
    ax.set_title("validation F1 per key")
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "key_f1.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 2.8))
    for ax, k, m in zip(np.atleast_1d(axes), keys, confusion, strict=True):
        ax.imshow(m, cmap="Blues")
        for (r, c), v in np.ndenumerate(m):
            ax.text(c, r, str(v), ha="center", va="center", color="black")
        ax.set_title(k.upper())
        ax.set_xticks([0, 1], ["up", "down"])
        ax.set_yticks([0, 1], ["up", "down"])
        ax.set_xlabel("predicted")
    np.atleast_1d(axes)[0].set_ylabel("pressed")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=90)
    plt.close(fig)
