"""Third-party numerics as facts with versions: what ml_dtypes, torch and Liger do, probed.

A library's rounding, saturation or bit patterns are not constants of nature: they change
between releases (ml_dtypes 0.7.0 stopped rounding float64 -> bf16 through float32). This
package keeps them as a versioned table (`facts.FACTS`), probes the installed versions
(`probes.PROBES`) and compares the two (`compare.observe_all`):
- a covered version whose probed behaviour contradicts the table is a failure;
- an uncovered version is reported with what it does, never failed.
`docs/upstream.md` is rendered from the table (`normtheory upstream --markdown`).
"""

from normtheory.upstream.compare import Observation, observe_all
from normtheory.upstream.facts import FACTS, Fact

__all__ = ["FACTS", "Fact", "Observation", "observe_all"]
