"""Prompt styles in A1111's ``styles.csv`` (columns ``name,prompt,negative_prompt``): read, apply, save.

A style's prompt either holds the ``{prompt}`` placeholder, which the user's prompt replaces, or is
appended to the user's prompt after ", " (the same for the negative prompt). Styles apply in the
order given. The file is read again whenever it changed on disk, so edits made by hand (or by A1111
itself, sharing the file) show up without a restart.
"""

from __future__ import annotations

import csv
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

PLACEHOLDER = "{prompt}"
FIELDS = ("name", "prompt", "negative_prompt")


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def merge_prompt(style_text: str, prompt: str) -> str:
    """One style text applied to one prompt (A1111's rule: ``{prompt}`` placeholder, else ", "-joined)."""
    if PLACEHOLDER in style_text:
        return style_text.replace(PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def read_styles(path: Path) -> dict[str, PromptStyle]:
    """styles.csv -> {name: style}; a missing file is no styles; rows without a name are skipped."""
    path = Path(path)
    if not path.is_file():
        return {}
    styles: dict[str, PromptStyle] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f, skipinitialspace=True):
            name = (row.get("name") or "").strip()
            if name:
                styles[name] = PromptStyle(name, row.get("prompt") or "", row.get("negative_prompt") or "")
    return styles


class StyleStore:
    """The styles of one styles.csv, re-read when the file changes; ``save`` writes the file atomically."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._styles: dict[str, PromptStyle] = {}

    def _current(self) -> dict[str, PromptStyle]:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._styles = read_styles(self.path) if stamp else {}
                self._stamp = stamp
            return dict(self._styles)

    def names(self) -> list[str]:
        return list(self._current())

    def all(self) -> list[PromptStyle]:
        return list(self._current().values())

    def get(self, name: str) -> PromptStyle:
        styles = self._current()
        if name not in styles:
            raise ValueError(f"unknown style {name!r} (styles in {self.path}: {', '.join(styles) or 'none'})")
        return styles[name]

    def apply(self, names: Iterable[str], prompt: str, negative_prompt: str) -> tuple[str, str]:
        """(prompt, negative prompt) with the named styles applied in order; ValueError names an unknown one."""
        for name in names:
            style = self.get(name)
            prompt = merge_prompt(style.prompt, prompt)
            negative_prompt = merge_prompt(style.negative_prompt, negative_prompt)
        return prompt, negative_prompt

    def save(self, style: PromptStyle) -> None:
        """Adds (or replaces) a style and rewrites the file (A1111's column order)."""
        if not style.name.strip():
            raise ValueError("a style needs a name")
        styles = self._current()
        styles[style.name.strip()] = PromptStyle(style.name.strip(), style.prompt, style.negative_prompt)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".styles-", suffix=".csv")
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            for s in styles.values():
                writer.writerow({"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt})
        os.replace(tmp, self.path)
