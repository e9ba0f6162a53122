"""Progress display for long stages: rich bars on a terminal, plain lines otherwise.

A reporter gives ``stage(name, total)``, a context manager yielding ``advance(n=1, note="")``,
and ``note(text)`` for one-off messages. All output goes to stderr.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


class QuietReporter:
    """Shows nothing."""

    @contextmanager
    def stage(self, name, total=None):
        yield lambda n=1, note="": None

    def note(self, text):
        pass


class PlainReporter:
    """One line when a stage starts and ends, and a line every ``every`` steps (for logs)."""

    def __init__(self, stream=None, every=10):
        self.stream = stream or sys.stderr
        self.every = every

    def _print(self, text):
        print(text, file=self.stream, flush=True)

    @contextmanager
    def stage(self, name, total=None):
        start = time.perf_counter()
        done = 0
        self._print(f"{name}: started")

        def advance(n=1, note=""):
            nonlocal done
            done += n
            if done % self.every == 0:
                of = f"/{total}" if total else ""
                self._print(f"{name}: {done}{of} {note}".rstrip())

        yield advance
        self._print(f"{name}: done in {time.perf_counter() - start:.1f} s ({done} steps)")

    def note(self, text):
        self._print(f"note: {text}")


class RichReporter:
    """Live progress bars (rich) for an interactive terminal."""

    def __init__(self, stream=None):
        from rich.console import Console

        self.console = Console(file=stream or sys.stderr)

    @contextmanager
    def stage(self, name, total=None):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = (TextColumn("[bold]{task.description:>7s}"), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[note]}"))
        with Progress(*columns, console=self.console) as progress:
            task = progress.add_task(name, total=total, note="")

            def advance(n=1, note=""):
                progress.update(task, advance=n, note=note)

            yield advance
            # A stage that ends early (EM converged) shows a full bar.
            final = progress.tasks[0].completed
            progress.update(task, total=max(final, 1), completed=max(final, 1))

    def note(self, text):
        self.console.print(f"[dim]note:[/dim] {text}", highlight=False)


def reporter_for(stream=None, quiet=False):
    """Rich bars on a terminal, plain lines otherwise, nothing when ``quiet``."""
    stream = stream or sys.stderr
    if quiet:
        return QuietReporter()
    if stream.isatty():
        try:
            return RichReporter(stream)
        except ImportError:
            pass
    return PlainReporter(stream)
