"""Kernel certification: input families, checks against the correctly rounded reference and
the precision model's bounds, certificates, reports, record/check."""
