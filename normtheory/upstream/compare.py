"""Probe the installed packages and hold each observation against the table."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from normtheory.upstream.facts import FACTS, Fact
from normtheory.upstream.probes import PROBES, NotApplicable

AGREES, CONTRADICTS, UNCOVERED, NOT_PROBED = "agrees", "CONTRADICTS", "uncovered version", "not probed"


@dataclass(frozen=True)
class Observation:
    behaviour: str
    package: str
    version: str | None  # installed version; None when the package is missing
    probed: str | None  # what the probe saw; None when it could not run (`note` says why)
    expected: str | None  # the table's value for this version; None when no row covers it
    status: str
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.status == CONTRADICTS


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def covering_row(rows: list[Fact], version: str) -> Fact | None:
    # pre-releases and local labels (+cpu, +cu130) belong to the release they precede/label
    release = Version(Version(version).base_version)
    for row in rows:
        if SpecifierSet(row.versions).contains(release, prereleases=True):
            return row
    return None


def observe(behaviour: str, probes=PROBES) -> Observation:
    rows = [fact for fact in FACTS if fact.behaviour == behaviour]
    package = rows[0].package
    version = installed_version(package)
    if version is None:
        return Observation(behaviour, package, None, None, None, NOT_PROBED, f"{package} is not installed")
    row = covering_row(rows, version)
    expected = row.value if row else None
    try:
        probed = probes[behaviour]()
    except NotApplicable as exc:
        return Observation(behaviour, package, version, None, expected, NOT_PROBED, str(exc))
    if row is None:
        return Observation(behaviour, package, version, probed, None, UNCOVERED,
                           f"the table covers {', '.join(r.versions for r in rows)}")
    return Observation(behaviour, package, version, probed, expected, AGREES if probed == expected else CONTRADICTS)


def observe_all(behaviours=None, probes=PROBES) -> list[Observation]:
    """Every behaviour of the table (or the named ones), probed and judged."""
    names = list(dict.fromkeys(fact.behaviour for fact in FACTS)) if behaviours is None else list(behaviours)
    return [observe(name, probes) for name in names]
