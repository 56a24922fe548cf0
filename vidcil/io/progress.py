"""Training progress where people look: a rich bar on a terminal, plain lines everywhere else.

Airflow task logs and pod logs are not terminals (rich would print one blank line there), so
off a terminal every epoch writes one line: loss terms, train accuracy, clips/s and the ETA.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def hms(seconds: float) -> str:
    """``seconds`` as H:MM:SS."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class EpochProgress:
    """``with EpochProgress("b001 distil", epochs=6, clips=120) as p: ... p.epoch_done(e, row)``.

    ``start_epoch``: epochs already done (a resumed run); the ETA counts only the ones left.
    """

    def __init__(self, label: str, epochs: int, clips: int, *, start_epoch: int = 0,
                 stream: TextIO | None = None, terminal: bool | None = None):
        self.label, self.epochs, self.clips, self.start_epoch = label, epochs, clips, start_epoch
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self._bar = self._task = None

    def __enter__(self) -> "EpochProgress":
        self._t0 = self._last = time.perf_counter()
        if self.terminal:
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(transient=True, console=Console(file=self.stream))
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.epochs, completed=self.start_epoch)
        elif self.start_epoch:
            self._line(f"resuming after epoch {self.start_epoch}/{self.epochs} (checkpoint)")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def _line(self, text: str) -> None:
        print(f"[vidcil] {self.label} {text}", file=self.stream, flush=True)

    def epoch_done(self, epoch: int, row: dict[str, float]) -> None:
        """``epoch``: 0-based index of the epoch just finished; ``row``: its loss terms and accuracy."""
        now = time.perf_counter()
        rate = self.clips / max(now - self._last, 1e-9)
        done = epoch + 1 - self.start_epoch
        eta = (now - self._t0) / max(done, 1) * (self.epochs - epoch - 1)
        self._last = now
        terms = " ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("train_accuracy", "steps"))
        text = (f"epoch {epoch + 1}/{self.epochs} {terms} train_acc {row['train_accuracy']:.3f} "
                f"clips/s {rate:.1f} eta {hms(eta)}")
        if self._bar is not None:
            self._bar.update(self._task, completed=epoch + 1, description=f"{self.label} {text}")
        else:
            self._line(text)
