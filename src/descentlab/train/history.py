"""What a training run records: per-step loss (and its bias-corrected EMA), learning rate, samples seen
and wall time; per-epoch train / validation metrics. Saveable to CSV / JSON and plottable."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from descentlab.averaging import EMA
from descentlab.outputs import write_text_atomically  # noqa: F401  (imported from here by earlier code)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as CSV text; the columns are the union of the keys, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def picture_of(write: Any, max_width: int = 760) -> bytes | None:
    """PNG bytes of the picture ``write(path)`` draws (a library plot function), scaled down to ``max_width``
    pixels and 128 colours for inline display; ``None`` without matplotlib."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "picture.png"
            write(path)
            data = path.read_bytes()
    except ImportError:
        return None
    try:
        from PIL import Image  # comes with matplotlib

        image = Image.open(io.BytesIO(data)).convert("RGB")
        if image.width > max_width:
            image = image.resize((max_width, round(image.height * max_width / image.width)), getattr(Image, "Resampling", Image).LANCZOS)
        out = io.BytesIO()
        image.quantize(colors=128).save(out, format="PNG", optimize=True)  # a third of the bytes, same look
        data = out.getvalue()
    except ImportError:
        pass
    return data


def notebook_html(title: str, picture: bytes | None, headers: list[str], rows: list[list[Any]], *,
                  note: str = "", max_rows: int = 20) -> str:
    """What a result shows inline in a notebook (``_repr_html_``): a title, one picture and a small table (the
    first ``max_rows`` rows; the rest counted)."""
    import base64
    import html

    cell = lambda v: html.escape(f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows[:max_rows])
    more = f"<p><i>… and {len(rows) - max_rows} more rows</i></p>" if len(rows) > max_rows else ""
    img = (f'<img alt="{html.escape(title)}" style="max-width:100%" src="data:image/png;base64,'
           f'{base64.b64encode(picture).decode()}">' if picture else "")
    return (f'<div class="descentlab"><b>{html.escape(title)}</b>{f"<br><small>{html.escape(note)}</small>" if note else ""}'
            f'<br>{img}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}</div>')


@dataclass
class History:
    """The record of a run. ``steps`` has one dict per optimizer step (``step, epoch, loss, loss_ema, lr,
    samples, seconds``), ``epochs`` one per finished epoch (``epoch, train_loss, val_loss, …, lr, steps,
    samples, seconds, epoch_seconds`` — the time of the epoch's steps alone). ``loss_ema`` is the bias-corrected
    EMA (β = ``ema_beta``) of the per-step loss. ``batch_size_choice`` is what ``batch_size="auto"`` chose (``{"batch_size", "n_samples", "reason"}``; ``None``
    when the size was given)."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    ema_beta: float = 0.98
    _ema: EMA | None = field(default=None, repr=False)
    batch_size_choice: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self._ema is None:
            self._ema = EMA(self.ema_beta)

    def _smoother(self) -> EMA:
        if self._ema is None:
            self._ema = EMA(self.ema_beta)
        return self._ema

    def record_step(self, *, step: int, epoch: int, loss: float, lr: float, samples: int, seconds: float) -> None:
        """Append one step (the EMA is updated here)."""
        smoothed = self._smoother().update(loss)
        self.steps.append({"step": step, "epoch": epoch, "loss": loss, "loss_ema": smoothed, "lr": lr,
                           "samples": samples, "seconds": seconds})

    def record_epoch(self, row: dict[str, Any]) -> None:
        """Append one finished epoch's metrics."""
        self.epochs.append(dict(row))

    @property
    def final(self) -> dict[str, Any]:
        """The last epoch's row (empty before the first epoch ends)."""
        return dict(self.epochs[-1]) if self.epochs else {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the record after a resume."""
        return {"steps": [dict(r) for r in self.steps], "epochs": [dict(r) for r in self.epochs],
                "ema_beta": self.ema_beta, "ema": self._smoother().state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "History":
        """Rebuild a History saved by :meth:`state_dict`."""
        history = cls([dict(r) for r in state["steps"]], [dict(r) for r in state["epochs"]], state["ema_beta"])
        history._smoother().load_state_dict(state["ema"])
        return history

    def to_csv(self, path: str | os.PathLike, which: str = "steps") -> Path:
        """Write the per-step (``which="steps"``) or per-epoch (``"epochs"``) rows as CSV, atomically."""
        if which not in ("steps", "epochs"):
            raise ValueError(f"which must be 'steps' or 'epochs', got {which!r}")
        return write_text_atomically(path, csv_text(self.steps if which == "steps" else self.epochs))

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write both tables as one JSON document, atomically."""
        return write_text_atomically(path, json.dumps({"steps": self.steps, "epochs": self.epochs}, indent=1))

    def _repr_html_(self) -> str:
        """Inline display in notebooks: the loss picture and the per-epoch table."""
        picture = picture_of(self.plot) if self.steps or self.epochs else None
        rows = self.epochs or self.steps[-20:]
        headers = list(dict.fromkeys(k for row in rows for k in row))
        what = f"{len(self.epochs)} epochs" if self.epochs else f"the last {len(rows)} steps"
        return notebook_html(f"History: {len(self.steps)} steps, {len(self.epochs)} epochs", picture, headers,
                             [[row.get(k, "") for k in headers] for row in rows], note=f"table: {what}")

    def plot(self, path: str | os.PathLike, title: str = "") -> Path:
        """The notes' picture: the noisy per-step cost, its smoothed curve, and per-epoch points."""
        from descentlab.outputs import new_figure, save_figure_atomically

        fig = new_figure(figsize=(7.5, 4.2))
        ax = fig.subplots()
        if self.steps:
            s = [r["step"] for r in self.steps]
            ax.plot(s, [r["loss"] for r in self.steps], color="0.7", linewidth=0.8, label="per-step cost (mini-batch)")
            ax.plot(s, [r["loss_ema"] for r in self.steps], color="tab:blue", label="smoothed (EMA, bias-corrected)")
        if self.epochs:
            ends = [r["steps"] for r in self.epochs]
            ax.plot(ends, [r["train_loss"] for r in self.epochs], "o", color="tab:red", label="train loss (epoch end)")
            if self.epochs[0].get("val_loss") is not None:
                ax.plot(ends, [r["val_loss"] for r in self.epochs], "s", color="tab:green", label="validation loss")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cost")
        positive = all(r["loss"] > 0 for r in self.steps)
        if positive and self.steps:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(title)
        return save_figure_atomically(fig, path)
