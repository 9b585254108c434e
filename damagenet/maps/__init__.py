"""Damage maps: ``damagenet predict``, its raster and vector writers, tallies and quick-looks."""
