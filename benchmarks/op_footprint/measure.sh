#!/usr/bin/env bash
# How many files does one op touch? Remove l2normalize (issue 18's proof op) from a scratch copy
# of this commit and count what the removal changes, outside tests/ and docs/.
#
#   bash benchmarks/op_footprint/measure.sh          # the file list and the counts
#   bash benchmarks/op_footprint/measure.sh --test   # also lint, type-check and test the tree without it
#
# remove_l2normalize.patch is `git diff` from the commit that added this script to a branch where
# the op was removed by hand: its NormSpec, its statistic (sum_square) and eps floor (max) in each
# layer's statistic_rules.py, its kernel and catalog entry, its proof, its tests and docs. A patch
# that no longer applies means the op's code moved: re-make it (and re-count) rather than force it.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
scratch=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$scratch" >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
git -C "$root" worktree add --quiet --detach "$scratch" HEAD
git -C "$scratch" apply "$root/benchmarks/op_footprint/remove_l2normalize.patch"
cd "$scratch"
git add -A
echo "files the op's removal changes, outside tests/ and docs/:"
git diff --cached --stat HEAD -- . ':!tests' ':!docs' | cat
code=$(git diff --cached --name-only HEAD -- . ':!tests' ':!docs' ':!README.md' ':!*/README.md' | wc -l)
all=$(git diff --cached --name-only HEAD -- . ':!tests' ':!docs' | wc -l)
echo "code files: $code; with the README files: $all (issue 18's bar: 8)"
if [[ "${1:-}" == "--test" ]]; then
    export PYTHONPATH="$scratch"  # this tree, not an editable install of another
    lint-imports --no-cache && ruff check normtheory tests proofs benchmarks && mypy
    python -m pytest -q -n 2 -m "not slow and not gpu" -p no:cacheprovider
fi
