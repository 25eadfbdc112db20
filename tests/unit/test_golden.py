"""WebSite behaves exactly as it did before the issue-8 refactor: the plans, the passes
against an in-memory cloud and what the operator knows about each OpenStack kind are
compared with golden files recorded before the refactor.

A difference is a bug, or a deliberate change explained in the commit that re-records the
file. Re-record with ``FLEXINFRA_GOLDEN=record pytest tests/unit/test_golden.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.golden import pass_corpus, planner_corpus, website_api

HERE = Path(__file__).parent / "golden"
RECORD = os.environ.get("FLEXINFRA_GOLDEN") == "record"


def check(name: str, text: str) -> None:
    path = HERE / name
    if RECORD:
        path.write_text(text)
        pytest.skip(f"recorded {path.name}")
    expected = path.read_text()
    if text != expected:  # show the first differing lines, not two 3000-line strings
        got, want = text.splitlines(), expected.splitlines()
        pairs = enumerate(zip(got, want, strict=False))
        n = next((i for i, (a, b) in pairs if a != b), min(len(got), len(want)))
        context = "\n".join(want[max(0, n - 6):n])
        raise AssertionError(
            f"{name} differs from line {n + 1}:\n{context}\n"
            f"- {want[n] if n < len(want) else '<end>'}\n+ {got[n] if n < len(got) else '<end>'}"
        )


def test_planner_corpus_matches_golden():
    check("planner.txt", planner_corpus.render_corpus())


def test_whole_passes_match_golden():
    check("passes.txt", pass_corpus.render_corpus())


def test_kind_facts_match_golden():
    check("kinds.txt", "\n".join(website_api.kind_facts()) + "\n")


def test_flexinfra_plan_prints_what_it_printed_for_the_examples():
    """``flexinfra plan -f`` on examples/ (and two broken sites) against the in-memory cloud,
    in a fresh interpreter; plan_cli.txt was printed by the code before the refactor."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(HERE / "plan_cli_run.py")], capture_output=True,
                          text=True, timeout=120, check=True)
    check("plan_cli.txt", done.stdout)
