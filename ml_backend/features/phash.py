"""Near-duplicate images by perceptual hash: the same scene shot twice wastes ratings.

A difference hash (dHash: 64 bits, whether each pixel of a 9x8 grey thumbnail is brighter than its
right neighbour) survives resizing, recompression and small exposure changes; two images whose
hashes differ in at most ``MAX_DISTANCE`` bits are near-duplicates. Candidate pairs share one of
the hash's 8 bytes (any pair within 7 bits does, by pigeonhole); each byte's buckets are compared
in one array operation. The seed hashes folders of up to ``MAX_IMAGES`` images (one more read of
each, a few ms).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: Bits two hashes may differ in for their images to count as near-duplicates.
MAX_DISTANCE = 6
#: Larger folders are not hashed by the seed (the extra read of every image would cost minutes).
MAX_IMAGES = 20_000


def dhash(path: Path) -> int | None:
    """The image's 64-bit difference hash; None when it cannot be read."""
    try:
        with Image.open(path) as image:
            image.draft("L", (64, 64))  # JPEG: decode at 1/8 scale, enough for a 9x8 thumbnail
            grey = ImageOps.exif_transpose(image).convert("L").resize((9, 8), Image.Resampling.BOX)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    pixels = np.asarray(grey, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def near_duplicate_groups(hashes: list[int | None], max_distance: int = MAX_DISTANCE) -> list[list[int]]:
    """Groups (indices into ``hashes``, each sorted, at least two) of images linked by hashes at
    most ``max_distance`` bits apart; unreadable images (None) are in none."""
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, value in enumerate(hashes):
        if value is not None:
            for byte in range(8):
                buckets[(byte, (value >> (8 * byte)) & 0xFF)].append(index)
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for members in buckets.values():
        if len(members) < 2:
            continue
        values = np.array([hashes[i] for i in members], dtype=np.uint64)
        distance = np.unpackbits((values[:, None] ^ values[None, :]).view(np.uint8), axis=-1)
        distance = distance.reshape(len(members), len(members), -1).sum(axis=-1)
        for a, b in zip(*np.nonzero(np.triu(distance <= max_distance, k=1)), strict=True):
            i, j = root(members[a]), root(members[b])
            if i != j:
                parent[j] = i
    groups: dict[int, list[int]] = defaultdict(list)
    for index, value in enumerate(hashes):
        if value is not None:
            groups[root(index)].append(index)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])
