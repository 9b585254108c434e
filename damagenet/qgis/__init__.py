"""QGIS styles for the raster maps and the vector layers."""
