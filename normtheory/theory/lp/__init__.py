"""Lp normalizers: conditioning in closed form, overflow thresholds, measurement, depth."""
