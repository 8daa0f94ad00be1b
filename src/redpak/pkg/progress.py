# Progress of downloads and transactions: a redrawn bar on a terminal, one plain line
# per item otherwise (logs and pipes get readable text, no carriage returns).
"""Progress reporting for package commands."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import TextIO

_WIDTH = 24


class Progress:
    """Reports phases made of items; `quiet` silences everything."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None,
                 quiet: bool = False):
        self.stream = stream if stream is not None else sys.stdout
        if tty is None:
            try:
                tty = self.stream.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.quiet = quiet
        self._line = ""

    def item(self, verb: str, name: str, index: int, total: int) -> None:
        """An item starts: 'Installing foo-1.0-1.noarch (2/5)'."""
        if self.quiet:
            return
        if self.tty:
            self._draw(verb, name, index - 1, total, 0.0)
        else:
            self._print(f"  {verb} {name} ({index}/{total})")

    def update(self, verb: str, name: str, index: int, total: int, fraction: float) -> None:
        """Progress inside the current item (drawn on a terminal only)."""
        if self.tty and not self.quiet:
            self._draw(verb, name, index - 1, total, fraction)

    def done(self, verb: str, name: str, index: int, total: int) -> None:
        """The current item is finished."""
        if self.tty and not self.quiet:
            self._draw(verb, name, index, total, 0.0)
            if index >= total:
                self.finish()

    def note(self, text: str) -> None:
        """A line of its own (keeps a bar being drawn intact)."""
        if self.quiet:
            return
        self.finish()
        self._print(text)

    def finish(self) -> None:
        """End the bar's line."""
        if self._line:
            self.stream.write("\n")
            self.stream.flush()
            self._line = ""

    def _draw(self, verb: str, name: str, done: int, total: int, fraction: float) -> None:
        share = (done + fraction) / total if total else 1.0
        filled = int(round(share * _WIDTH))
        bar = "#" * filled + "-" * (_WIDTH - filled)
        label = f"{verb} {name}"
        if len(label) > 44:
            label = label[:41] + "..."
        line = f"  {label:<44} [{bar}] {min(done + 1, total)}/{total}"
        pad = max(0, len(self._line) - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._line = line

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
