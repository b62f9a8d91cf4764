"""The work an evaluate run has finished, kept on disk so that an interrupted run resumes.

Each finished piece (a replay: a configuration and seed, all its budgets; or one trial of the
rater-budget study) is appended as one JSON line and flushed at once. The first line is a
fingerprint of everything the trials depend on (the grid, the images and their MOS, the features,
the package's code): a journal written for other inputs is started over rather than mixed in.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np

#: The journal's name in evaluate's output folder (removed once results.json is written).
JOURNAL = "replays-in-progress.jsonl"
#: The package's folder: its files (code, bundled prior) are part of every fingerprint.
PACKAGE = Path(__file__).resolve().parent.parent
#: Rows hashed at a time: a memory-mapped feature store is read in pieces, never whole.
HASH_ROWS = 4096


def fingerprint(header: dict[str, Any], settings: Iterable[Mapping[str, Any]], arrays: Iterable[np.ndarray]) -> str:
    """A journal's fingerprint: SHA-256 of the package's files, of every file a value of
    ``settings`` names (a prior), of ``header`` (as JSON) and of the ``arrays``' shapes, types and
    values. Equal inputs give equal trials, so an equal fingerprint means a journal can be trusted."""
    named = [str(value) for params in settings for value in params.values()]
    files = [f for f in sorted(PACKAGE.rglob("*")) if f.is_file() and "__pycache__" not in f.parts]
    files += [Path(value) for value in named if value and Path(value).is_file()]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    arrays = list(arrays)
    shapes = [[list(a.shape), str(a.dtype)] for a in arrays]
    digest.update(json.dumps({**header, "arrays": shapes}).encode())
    for array in arrays:
        for start in range(0, len(array), HASH_ROWS):
            digest.update(np.ascontiguousarray(array[start : start + HASH_ROWS]).tobytes())
    return digest.hexdigest()


class Journal:
    """Finished work of one evaluate run, by key (for a grid: labels, strategy, selector,
    predictor, seed; for the rater-budget study: budget, design, seed)."""

    def __init__(self, path: Path, digest: str) -> None:
        self.path = path
        self.digest = digest
        self.done: dict[tuple[Hashable, ...], list[dict[str, Any]]] = {}
        self.restarted = False
        self._handle: IO[str] | None = None
        self._continues = False  # append to the file read (the same inputs) instead of starting it over
        self._torn = False

    def open(self) -> Journal:
        """Read what an earlier run with the same inputs finished (a torn last line is dropped);
        a journal for other inputs is started over. The file is written from the first record
        on, so a run that fails before finishing anything leaves nothing behind."""
        text = self.path.read_text(encoding="utf-8", errors="replace") if self.path.is_file() else ""
        lines = text.splitlines()
        header = _parse(lines[0]) if lines else None
        self._continues = header is not None and header.get("fingerprint") == self.digest
        if self._continues:
            for line in lines[1:]:
                entry = _parse(line)
                if entry is not None and isinstance(entry.get("key"), list) and isinstance(entry.get("trials"), list):
                    self.done[tuple(entry["key"])] = entry["trials"]
            self._torn = not text.endswith("\n")
        else:
            self.restarted = bool(lines)
        return self

    def record(self, key: tuple[Hashable, ...], trials: list[Any]) -> None:
        """Keep one finished piece's trials (dataclasses)."""
        entry = [asdict(t) for t in trials]
        self.done[key] = entry
        self._write({"key": list(key), "trials": entry})

    def close(self, finished: bool) -> None:
        """Close the file; a finished run's journal is removed (its results are in results.json)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if finished:
            self.path.unlink(missing_ok=True)

    def _write(self, entry: dict[str, Any]) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a" if self._continues else "w", encoding="utf-8")
            if not self._continues:
                self._handle.write(json.dumps({"fingerprint": self.digest}) + "\n")
            elif self._torn:
                self._handle.write("\n")  # after a torn line, the next entry starts a line of its own
        self._handle.write(json.dumps(entry) + "\n")
        self._handle.flush()


def _parse(line: str) -> dict[str, Any] | None:
    """A journal line, or None for one an interrupted write left torn."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None
