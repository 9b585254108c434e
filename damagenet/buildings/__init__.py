"""Damage per building footprint and per zone (``damagenet aggregate``)."""
