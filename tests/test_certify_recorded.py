"""Recordings committed under tests/data/certify/<machine>/ are judged again on every CI run
(`normtheory check`, no kernel needed): the verdicts and worst errors must match what was
recorded next to them in manifest.json by benchmarks/record_catalog.py."""

from __future__ import annotations

import glob
import json
import os

import pytest

from normtheory.certify.check import check_recording
from normtheory.certify.recording import load

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "certify")


def _entries():
    for manifest in sorted(glob.glob(os.path.join(DATA, "*", "manifest.json"))):
        with open(manifest) as handle:
            content = json.load(handle)
        for entry in content["recordings"]:
            if entry.get("recorded"):
                yield pytest.param(os.path.dirname(manifest), entry,
                                   id=f"{os.path.basename(os.path.dirname(manifest))}/{entry['file']}")


ENTRIES = list(_entries())


def test_there_are_recordings_to_check():
    assert ENTRIES, f"no recordings listed under {DATA}"


@pytest.mark.parametrize("directory,entry", ENTRIES)
def test_recording_is_judged_as_recorded(directory, entry):
    arrays, meta = load(os.path.join(directory, entry["file"]))
    assert meta["kernel"] == entry["kernel"] and meta["format"] == entry["format"]
    cert = check_recording(arrays, meta, "default", source=entry["file"])
    assert cert["verdict"] == entry["verdict"], cert["findings"]
    assert cert["forward"]["max_ulp"] == pytest.approx(entry["forward"]["max_ulp"], rel=1e-12)
    for quantity, block in entry["backward"].items():
        assert cert["backward"][quantity]["max_err_over_bound"] == pytest.approx(block["max_err_over_bound"], rel=1e-9)
