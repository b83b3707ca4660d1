"""Hypothesis profiles shared by tests/ and proofs/ (docs/design.md §Testing and §House style).

- `dev`: fast local iteration.
- `ci`: extends hypothesis' built-in `ci` profile (derandomized, no deadline, database off).
- `nightly`: many examples, for a scheduled job.
Selected with HYPOTHESIS_PROFILE; CI=true selects `ci` by default.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_DATA_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]


def register_profiles() -> None:
    settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=_SLOW_DATA_OK)
    settings.register_profile(
        "ci",
        parent=settings.get_profile("ci"),
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=_SLOW_DATA_OK,
    )
    settings.register_profile("nightly", max_examples=2000, deadline=None, suppress_health_check=_SLOW_DATA_OK)
    default = "ci" if os.environ.get("CI") else "dev"
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", default))
