"""Row matrices that grow at the end without copying, shared by a model that serves and the next fit.

A retrain after one more label needs the labels' feature matrix with one more row. Copying
thousands of rows into a fresh array costs more than the fit itself (page faults of new memory:
docs/performance.md), so the rows live in a buffer with spare capacity: ``appended`` writes the
new rows past the end and returns a longer view, while views handed out before keep seeing
exactly their rows. Only the longest view may append; from any other a copy is made.
"""
from __future__ import annotations

import numpy as np

#: Spare capacity of a new buffer, as a fraction of its rows.
GROWTH = 0.25


def with_room(n: int) -> int:
    """Rows of a new buffer for ``n`` rows: ``GROWTH`` more, at least 16."""
    return n + max(16, int(GROWTH * n))


class _Buffer:
    def __init__(self, data: np.ndarray, filled: int) -> None:
        self.data, self.filled = data, filled


class GrowingRows:
    """The first ``len(self)`` rows of a shared buffer (``array`` is that view, always the same
    object for one GrowingRows)."""

    def __init__(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows)
        self._reserve(len(rows), rows.shape[1:], rows.dtype)
        self.array[...] = rows

    @classmethod
    def empty(cls, n: int, tail: tuple[int, ...], dtype: np.dtype | type) -> GrowingRows:
        """``n`` rows not yet written (``array``, to fill in place), with the spare capacity of a
        copy: what a caller that computes the rows anyway uses to save the copy."""
        rows = object.__new__(cls)
        rows._reserve(n, tail, dtype)
        return rows

    def _reserve(self, n: int, tail: tuple[int, ...], dtype: np.dtype | type) -> None:
        """A new buffer with room (``with_room``), its first ``n`` rows this view's."""
        data = np.empty((with_room(n), *tail), dtype=dtype)
        self._buffer, self._length, self.array = _Buffer(data, n), n, data[:n]

    def __len__(self) -> int:
        return self._length

    def appended(self, rows: np.ndarray) -> GrowingRows:
        """These rows followed by ``rows``; in place when this is the buffer's longest view and
        there is room, else in a new buffer."""
        rows = np.asarray(rows, dtype=self._buffer.data.dtype)
        end = self._length + len(rows)
        if self._buffer.filled != self._length or end > len(self._buffer.data):
            return GrowingRows(np.concatenate([self.array, rows]))
        self._buffer.data[self._length : end] = rows
        self._buffer.filled = end
        grown = object.__new__(GrowingRows)
        grown._buffer, grown._length, grown.array = self._buffer, end, self._buffer.data[:end]
        return grown
