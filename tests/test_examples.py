"""The examples run as a user runs them: from another folder, against the installed package."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = {"own_model.py": r"trained 3 steps of my own model on \d+ unlabelled videos",
            "own_planner.py": r"arrow of time: clips \(8, 3, 8, 56, 56\), reversed \["}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_an_example_runs_and_says_what_it_did(name, tmp_path):
    import re

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed package, not the checkout
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(EXAMPLES[name], done.stdout), done.stdout


def test_the_planner_example_stays_under_60_lines():
    with open(os.path.join(ROOT, "examples", "own_planner.py")) as f:
        assert len(f.read().splitlines()) < 60
