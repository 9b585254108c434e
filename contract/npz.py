"""A byte-reproducible, streaming ``.npz`` writer.

``numpy.savez`` stamps each zip member with the current time, so the same arrays saved twice
differ. This writer pins the timestamps, so the same inputs and seed give a byte-identical file.
Arrays spooled to a raw file on disk (:class:`SpooledArray`) are copied into the archive in
chunks, so writing a large patch file never holds it in memory. Both packages write with it:
``pipeline`` its patch, tile and dataset files, ``damagenet`` its cross-validation files.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.atomic import atomic_path

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
CHUNK = 16 * 2**20


@dataclass(frozen=True)
class SpooledArray:
    """A C-ordered array stored as raw bytes in ``path``."""

    path: Path
    dtype: np.dtype
    shape: tuple[int, ...]


def save_npz(
    path: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray | SpooledArray],
    compress: bool = False,
) -> None:
    """Write ``arrays`` to ``path`` atomically, readable by ``numpy.load``."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", method, allowZip64=True) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_TIME)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                if isinstance(value, SpooledArray):
                    header = {
                        "descr": np.lib.format.dtype_to_descr(np.dtype(value.dtype)),
                        "fortran_order": False,
                        "shape": tuple(value.shape),
                    }
                    np.lib.format.write_array_header_1_0(fh, header)
                    with open(value.path, "rb") as src:
                        shutil.copyfileobj(src, fh, CHUNK)
                else:
                    np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)
