"""Claims as registered expectations: what a source says, how this project judges it, the
verdict it expects (HOLDS / REFUTED / INCONCLUSIVE) and why. core.py judges, registry.py lists,
meanfield.py and archs.py build the comparisons, evidence.py holds what they are judged on."""
