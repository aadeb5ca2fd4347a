"""Importing bioperturb leaves Python's excepthook alone.

Brian2 installs ``brian_excepthook`` when it is imported, which reports every uncaught
exception (a user's own ``ValueError`` too) as a Brian 2 bug; bioperturb imports Brian2
on first use and must not leave that hook behind.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "code",
    [
        "import bioperturb; raise ValueError('x')",
        # a submodule that imports Brian2 (the rules, the config with its units)
        "import bioperturb.rules, bioperturb.config; raise ValueError('x')",
        "from bioperturb.schema import parse_quantity; parse_quantity('1 ms', 'second'); "
        "raise ValueError('x')",
    ],
)
def test_importing_bioperturb_leaves_no_brian2_bug_banner(code):
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert proc.returncode == 1
    assert proc.stderr.rstrip().endswith("ValueError: x")
    assert "Brian 2 encountered an unexpected error" not in proc.stderr
    assert "report" not in proc.stderr and "brian_debug" not in proc.stderr


def test_importing_bioperturb_keeps_a_users_own_excepthook():
    code = (
        "import sys\n"
        "def hook(*a): print('my hook', file=sys.stderr)\n"
        "sys.excepthook = hook\n"
        "import bioperturb.rules, brian2\n"
        "assert sys.excepthook is hook, sys.excepthook\n"
        "raise ValueError('x')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert proc.stderr.strip() == "my hook"
