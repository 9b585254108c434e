"""Creation options of every Cloud Optimized GeoTIFF the project writes."""

from __future__ import annotations


def cog_options(resampling: str, dtype: str) -> dict[str, str]:
    """DEFLATE with the predictor that suits ``dtype``, 256 px blocks, overviews by ``resampling``.

    Integer rasters use horizontal differencing (2), floats the floating-point predictor (3).
    """
    predictor = "3" if dtype.startswith("float") else "2"
    return {
        "COMPRESS": "DEFLATE",
        "PREDICTOR": predictor,
        "BLOCKSIZE": "256",
        "OVERVIEW_RESAMPLING": resampling,
        "BIGTIFF": "IF_SAFER",
    }
