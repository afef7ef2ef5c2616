"""On-disk cache of preprocessed samples, so that only the first epoch decodes and preprocesses.

* Key: SHA-256 of (for every source file: absolute path, size, mtime_ns), the preprocessing
  parameters that change the cached arrays, the cache format and the package version.  Editing,
  replacing or touching a file, or changing a parameter, gives a new key: the stale entry is
  simply never read again.  (A content change that keeps both size and mtime_ns is not seen; no
  normal tool does that, and hashing file contents would cost as much as decoding them.)
* Value: an uncompressed ``.npz`` (uint8 rgb, float32 kept points, int32 pixel indices, packed
  gt bits, and the key itself), about 0.15 MB + 16 bytes per point at 224 x 224.
* Writes go to a temporary file in the same folder and are published with ``os.replace``, so
  readers (other DataLoader workers, other processes) never see half a file.
* A cache file that cannot be read or does not hold what its name promises is counted as
  corrupt, removed and rebuilt.
* Location: ``$MENTOR3AD_CACHE_DIR``, else ``$XDG_CACHE_HOME/mentor3ad_ext/preprocess``, else
  ``~/.cache/mentor3ad_ext/preprocess``.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from .errors import DatasetError
from .preprocess import Preprocessed

# Bump when the preprocessing code changes its output for the same parameters.
CACHE_FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get("MENTOR3AD_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mentor3ad_ext" / "preprocess"


def _package_version() -> str:
    from .. import __version__

    return __version__


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0


class PreprocessCache:
    """A folder of ``<key>.npz`` files.  Safe to share between processes."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.stats = CacheStats()
        self._warned = False

    def key(self, files: Iterable[str | os.PathLike], params: dict) -> str:
        """Cache key of a sample made from ``files`` with preprocessing ``params``."""
        stamps = []
        for path in files:
            path = Path(path).absolute()
            try:
                st = path.stat()
            except OSError as err:
                raise DatasetError(path, f"cannot stat file: {err}") from err
            stamps.append([str(path), st.st_size, st.st_mtime_ns])
        blob = json.dumps({"files": stamps, "params": params, "format": CACHE_FORMAT_VERSION,
                           "version": _package_version()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def load(self, key: str) -> Preprocessed | None:
        """The cached sample, or None (miss, or a corrupt file, which is then removed)."""
        path = self.path(key)
        if not path.exists():
            self.stats.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) != key:
                    raise ValueError("key mismatch")
                rgb = data["rgb"]
                points = data["points"]
                pixel_index = data["pixel_index"].astype(np.int64)
                size = rgb.shape[0]
                gt = np.unpackbits(data["gt"], count=size * size).astype(bool)
            if (rgb.dtype != np.uint8 or rgb.shape != (size, size, 3)
                    or points.dtype != np.float32 or points.shape != (len(pixel_index), 3)
                    or (len(pixel_index) and (pixel_index.min() < 0
                                              or pixel_index.max() >= size * size))):
                raise ValueError("inconsistent arrays")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            self.stats.corrupt += 1
            self.stats.misses += 1
            try:
                path.unlink()
            except OSError:
                pass  # another worker may have replaced or removed it already
            return None
        self.stats.hits += 1
        return Preprocessed(rgb=rgb, points=points, pixel_index=pixel_index,
                            gt=gt.reshape(size, size))

    def save(self, key: str, pre: Preprocessed) -> None:
        """Publish ``pre`` under ``key`` atomically.

        A cache that cannot be written (read-only folder, full disk) must not stop training: it
        warns once and the sample is preprocessed again next time.
        """
        try:
            with atomic_write(self.path(key)) as fh:
                np.savez(fh, key=np.array(key), rgb=pre.rgb, points=pre.points,
                         pixel_index=pre.pixel_index.astype(np.int32),
                         gt=np.packbits(pre.gt.ravel()))
        except OSError as err:
            self._warn(err)

    def _warn(self, err: OSError) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"cannot write the preprocessing cache in {self.directory} ({err}); "
                          f"samples will be preprocessed again every epoch", RuntimeWarning,
                          stacklevel=3)
