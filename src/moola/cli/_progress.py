"""Live progress of a long command: a Rich display on a terminal, timestamped lines otherwise.

The library reports two things: a stage starts (``stage(text)``) and the work inside it
advances (``update(ProgressUpdate)``, with done and total known up front). This module
only draws them, in one of two ways chosen by ``console.is_terminal``:

- on a terminal, a Rich progress line shows the current stage with a bar, the work done,
  the elapsed time and the time left; each finished stage stays above it as one line
  with its duration;
- otherwise (a pipe, a log file, CI), each stage and each update is one plain line with
  the wall-clock time and the seconds since the start, printed (and flushed) when it
  happens, so a redirected run shows where it is while it runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from rich.markup import escape

if TYPE_CHECKING:
    from rich.console import Console

    from moola.training.callbacks import ProgressUpdate


class StageDisplay(Protocol):
    """What a long command reports to: stages in order, and progress inside the current one."""

    def stage(self, text: str) -> None: ...

    def update(self, progress: ProgressUpdate) -> None: ...


@contextmanager
def stage_display(console: Console) -> Iterator[StageDisplay]:
    """A ``StageDisplay`` for the block: Rich on a terminal, plain lines otherwise."""
    display: _Rich | _Plain = _Rich(console) if console.is_terminal else _Plain(console)
    try:
        yield display
    except BaseException:
        display.close(failed=True)  # never "done" right above the error that ended it
        raise
    display.close()


def eta_text(seconds: float) -> str:
    """``"42s"``, ``"3m05s"`` or ``"1h02m"``: a duration as a person reads it."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _Plain:
    """One flushed line per stage and per update: ``HH:MM:SS +12.3s text``."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.perf_counter()
        self.stage_started = self.started

    def stage(self, text: str) -> None:
        self.stage_started = time.perf_counter()
        self._line(text)

    def update(self, progress: ProgressUpdate) -> None:
        spent = time.perf_counter() - self.stage_started
        left = spent / progress.done * (progress.total - progress.done) if progress.done else 0
        self._line(f"  {progress.detail} [{progress.done}/{progress.total}, ETA {eta_text(left)}]")

    def close(self, failed: bool = False) -> None:
        self._line("stopped" if failed else "done")

    def _line(self, text: str) -> None:
        elapsed = time.perf_counter() - self.started
        self.console.print(
            f"{time.strftime('%H:%M:%S')} +{elapsed:6.1f}s {escape(text)}",
            highlight=False,
            soft_wrap=True,
        )
        self.console.file.flush()


class _Rich:
    """A Rich progress line for the current stage; finished stages print above it."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("[dim]{task.fields[detail]}"),
            console=console,
            transient=True,
        )
        self.task: Any = None
        self.text = ""
        self.stage_started = time.perf_counter()
        self.progress.start()

    def stage(self, text: str) -> None:
        self._finish_stage()
        self.text = text
        self.stage_started = time.perf_counter()
        self.task = self.progress.add_task(escape(text), total=None, detail="")

    def update(self, progress: ProgressUpdate) -> None:
        if self.task is not None:
            self.progress.update(
                self.task,
                total=progress.total,
                completed=progress.done,
                detail=escape(progress.detail),
            )

    def close(self, failed: bool = False) -> None:
        self._finish_stage(failed)
        self.progress.stop()

    def _finish_stage(self, failed: bool = False) -> None:
        if self.task is None:
            return
        self.progress.remove_task(self.task)
        spent = time.perf_counter() - self.stage_started
        mark = "[red]stopped[/]" if failed else "[green]done[/]"
        self.console.print(f"{mark} {escape(self.text)} [dim]({spent:.1f} s)[/]")
        self.task = None
