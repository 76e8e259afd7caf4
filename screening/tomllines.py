"""Where a piece of a TOML file is, so a file's errors can name ``file:line`` and suggest a name.

Shared by the policy and the column mappings: tomllib gives values, not positions, so the line is
found again in the text (the header of the table, then the key inside it).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["TomlLines", "did_you_mean"]


class TomlLines:
    """Finds the line of a piece of the source, so errors can name it."""

    def __init__(self, text: str, origin: str, error: type[Exception]) -> None:
        self.lines = text.splitlines()
        self.origin = origin
        self._error = error

    def find(self, needle: str, start: int = 0) -> int:
        for i in range(start, len(self.lines)):
            if needle in self.lines[i]:
                return i
        return -1

    def nth_header(self, header: str, n: int) -> int:
        seen = -1
        for i, line in enumerate(self.lines):
            if line.strip() == header:
                seen += 1
                if seen == n:
                    return i
        return -1

    def key_line(self, table: str, key: str = "") -> int:
        """The line of ``key`` inside ``[table]`` (the header's line without a key, or when the
        key is written elsewhere, e.g. as a dotted key); -1 when the table is not found."""
        head = self.nth_header(f"[{table}]", 0)
        if head < 0:
            return self.find(table)
        if not key:
            return head
        for i in range(head + 1, len(self.lines)):
            text = self.lines[i].strip()
            if text.startswith("["):
                break
            name = text.split("=", 1)[0].strip().strip("\"'")
            if name == key:
                return i
        return head

    def error(self, message: str, needle: str = "", start: int = 0) -> Exception:
        i = self.find(needle, start) if needle else -1
        if i < 0 and start > 0:
            i = start
        return self.error_at(i, message)

    def error_at(self, line: int, message: str) -> Exception:
        """``message`` prefixed with ``origin:line`` (``line`` 0-based; -1: the file alone)."""
        where = f"{self.origin}:{line + 1}" if line >= 0 else self.origin
        return self._error(f"{where}: {message}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
