"""Helpers for the notebooks (``notebooks/train.ipynb``, ``notebooks/inference.ipynb``): the tiny-mode switch, a
training display, the loss chart, the metrics table, Colab's upload and download, and pictures large enough to see.

The notebooks' work is done by :class:`nada.Studio`, which trains through the same coordinator as the app and the
command line (:class:`nada.style_trainer.StyleTrainer`) and loads models through the same store as the app; this
module only shows it. Nothing here imports IPython, tqdm, pandas, matplotlib or Colab's module until it is used.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .images import ImageSource
from .metrics import CLIP_KEYS, LABELS, Evaluation
from .runtime import tiny_mode

DISPLAY_MIN = 256  # small images (tiny mode) are enlarged to at least this many pixels a side
LABEL_PAD = 4  # pixels around a label's text


def in_colab() -> bool:
    """True inside Google Colab (its kernel imports ``google.colab`` at start)."""
    return "google.colab" in sys.modules


def enlarge(image: Image.Image, min_side: int = DISPLAY_MIN) -> Image.Image:
    """``image`` scaled up by a whole factor (nearest neighbour) until its short side is at least ``min_side``;
    unchanged when it already is (the 32 px tiny images would otherwise be specks)."""
    side = min(image.size)
    if side >= min_side or side == 0:
        return image
    k = -(-min_side // side)  # ceil
    return image.resize((image.width * k, image.height * k), Image.Resampling.NEAREST)


def _font(size: int = 14) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def labelled_grid(rows: Sequence[Sequence[Image.Image]], row_labels: Sequence[str] | None = None,
                  col_labels: Sequence[str] | None = None, size: int = 160) -> Image.Image:
    """One picture of ``rows`` of images, each tile ``size`` x ``size``, with optional labels left of each row and
    above each column (row lengths may differ). Small tiles are enlarged with nearest neighbour, large ones resized."""
    if not rows or not any(rows):
        raise ValueError("labelled_grid needs at least one image.")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(row_labels)} row labels.")
    n_cols = max(len(r) for r in rows)
    if col_labels is not None and len(col_labels) > n_cols:
        raise ValueError(f"{n_cols} columns but {len(col_labels)} column labels.")
    font = _font()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text: str) -> tuple[int, int]:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    left = max((text_size(t)[0] for t in row_labels), default=0) + 2 * LABEL_PAD if row_labels else 0
    top = max((text_size(t)[1] for t in col_labels), default=0) + 2 * LABEL_PAD if col_labels else 0
    sheet = Image.new("RGB", (left + n_cols * size, top + len(rows) * size), "white")
    pen = ImageDraw.Draw(sheet)
    for j, text in enumerate(col_labels or []):
        width = text_size(text)[0]
        pen.text((left + j * size + max(0, (size - width) // 2), LABEL_PAD), text, fill="black", font=font)
    for i, row in enumerate(rows):
        y = top + i * size
        if row_labels:
            pen.text((LABEL_PAD, y + (size - text_size(row_labels[i])[1]) // 2), row_labels[i], fill="black",
                     font=font)
        for j, image in enumerate(row):
            tile = image.convert("RGB")
            if tile.size != (size, size):
                small = max(tile.size) < size
                tile = tile.resize((size, size), Image.Resampling.NEAREST if small else Image.Resampling.LANCZOS)
            sheet.paste(tile, (left + j * size, y))
    return sheet


def offer_download(path: str | os.PathLike) -> Path:
    """In Colab, send the file to the browser (``google.colab.files.download``); elsewhere print where it is."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"Nothing to download: '{path}' does not exist.")
    if in_colab():
        from google.colab import files  # only in Colab

        files.download(str(path))
    else:
        print(f"Saved to {path}")
    return path


def upload_or(default: str | os.PathLike | None) -> ImageSource:
    """A photo: in Colab, the first file uploaded now (``google.colab.files.upload``; ``default`` when none is);
    elsewhere ``default`` (a path). Returns what :func:`nada.images.load_image` reads (bytes or a path)."""
    if in_colab():
        from google.colab import files  # only in Colab

        print("Choose a photo with a face (or cancel to use the example).")
        uploaded = files.upload()
        if uploaded:
            name, data = next(iter(uploaded.items()))
            print(f"Using {name}")
            return bytes(data)
    if default is None or not Path(default).is_file():
        raise FileNotFoundError(f"No photo: upload one, or set the path of a photo with a face (not found: {default}).")
    print(f"Using {default}")
    return Path(default)


# ------------------------------------------------------------------------------------------------ training
@dataclass
class TrainingLog:
    """What :func:`watch` saw of a training run."""

    last: Any = None  # the latest record (a nada.Progress): .style holds the weights trained so far
    losses: list[dict[str, float]] = field(default_factory=list)  # one row per step: {"step": 1, "total": ...}
    probe: tuple[list[float], list[int]] | None = None  # the latest probe: (score per W+ row, the rows it chose)
    style: Any = None  # the latest record's .style that was not None (the last record always has one)
    stopped: bool = False  # True when interrupted (the kernel's stop button): the steps so far are kept


def watch(records: Iterator, log: TrainingLog | None = None) -> TrainingLog:
    """Run a training (``studio.adapt(...)``'s records) with a progress bar and the latest preview on screen.

    Interrupting the kernel stops training after the current step and keeps what was trained (the log's ``last``
    record and its ``.style``). Pass a ``log`` to see the records as they come even if something fails."""
    from IPython.display import display  # notebook-only packages
    from tqdm.auto import tqdm

    log = log if log is not None else TrainingLog()
    preview = display("The first preview comes after a few steps...", display_id=True)
    bar = None
    try:
        for rec in records:
            log.last = rec
            log.style = rec.style if getattr(rec, "style", None) is not None else log.style
            bar = bar or tqdm(total=rec.total, unit="step")
            if rec.losses:
                log.losses.append({"step": rec.step, **rec.losses})
            if rec.scores is not None:
                log.probe = (list(rec.scores), list(rec.rows or []))
            if rec.preview is not None and preview is not None:
                preview.update(enlarge(rec.preview))
            bar.update(rec.step - bar.n)
            bar.set_postfix(loss=f"{rec.losses.get('total', math.nan):.4f}")
    except KeyboardInterrupt:
        log.stopped = True
        close = getattr(records, "close", None)
        if close is not None:
            close()
        print(f"Stopped: keeping the {log.last.step if log.last else 0} steps trained so far.")
    finally:
        if bar is not None:
            bar.close()
    if log.last is not None and log.last.error:
        print(f"Training stopped early: {log.last.error}")
    return log


def plot_training(log: TrainingLog, title: str = "Losses") -> None:
    """The loss curves, and beside them the latest probe's score per W+ row (the rows it chose in orange); a table
    instead when matplotlib is missing."""
    import pandas as pd
    from IPython.display import display

    if not log.losses:
        print("No losses to show (no step finished).")
        return
    curve = pd.DataFrame(log.losses).set_index("step")
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # Colab has it; elsewhere the numbers instead
        display(curve.tail())
        print("Latest probe (scores, rows):", log.probe)
        return
    fig, (ax_loss, ax_rows) = plt.subplots(1, 2, figsize=(12, 3.5))
    curve.plot(ax=ax_loss, title=title, xlabel="step")
    if log.probe is not None:
        scores, rows = log.probe
        ax_rows.bar([f"w{i}" for i in range(len(scores))], scores,
                    color=["tab:orange" if i in rows else "tab:gray" for i in range(len(scores))])
        ax_rows.set_title(f"Latest probe: {len(rows)} of {len(scores)} W+ rows trained (orange)")
    else:
        ax_rows.axis("off")
        ax_rows.text(0.5, 0.5, "No probe: this recipe trains every layer", ha="center", va="center")
    plt.tight_layout()
    plt.show()


def metrics_table(metrics: Evaluation | Mapping[str, Any]):
    """``nada.Studio.evaluate``'s figures (an :class:`~nada.metrics.Evaluation`, or :func:`nada.metrics.evaluate`'s
    dict) as a table (a pandas DataFrame): key, what it is called, value."""
    import pandas as pd

    if isinstance(metrics, Evaluation):
        metrics = metrics.as_dict()
    names = {"s_dir": LABELS["s_dir"],
             "clip_target_source": f"{LABELS['clip_target']}, source", "clip_target_adapted":
             f"{LABELS['clip_target']}, styled", "diversity_source": f"{LABELS['diversity']}, source",
             "diversity_adapted": f"{LABELS['diversity']}, styled", "id": LABELS["id"]}
    keys = [k for k in (*CLIP_KEYS, "id") if k in metrics]
    return pd.DataFrame({"figure": [names.get(k, k) for k in keys], "value": [float(metrics[k]) for k in keys]},
                        index=pd.Index(keys, name="key"))


__all__ = ["tiny_mode", "in_colab", "enlarge", "labelled_grid", "offer_download", "upload_or", "TrainingLog", "watch",
           "plot_training", "metrics_table", "DISPLAY_MIN"]
