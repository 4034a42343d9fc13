"""Running the ``tltf`` command line inside a test process."""

from __future__ import annotations

import contextlib
import io

from tltf.cli import main


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``tltf ARGV``: ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()
