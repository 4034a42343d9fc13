"""The `tltf` command line. Each sub-command lives in `tltf/commands/<name>.py`.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Exit codes: 0 success; 2 a usage error or an error tltf
raises on purpose (a bad spec, file, column or config key); 1 any other failure;
130 interrupted. Errors print as one line; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# sub-command -> module; modules are imported only when their command runs.
COMMANDS = {
    "train": "tltf.commands.train",
    "predict": "tltf.commands.predict",
    "export": "tltf.commands.export",
    "evaluate": "tltf.commands.evaluate",
    "backbones": "tltf.commands.backbones",
    "recommend": "tltf.commands.recommend",
    "rank": "tltf.commands.rank",
    "lr-find": "tltf.commands.lr_find",
}


def _parser(commands: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tltf",
        description="Transfer learning for TensorFlow and Keras 3.",
        epilog="'tltf COMMAND --help' explains each command's options. Exit codes: 0 success; "
        "2 a usage error or a problem you can fix (bad spec, file, column, config key); "
        "1 any other failure. Errors print as one line; --debug shows the traceback.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in commands.items():
        cmd = importlib.import_module(module)
        p = sub.add_parser(name, help=cmd.HELP, description=cmd.HELP)
        cmd.add_arguments(p)
        p.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
        )
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tltf` console script; returns the exit code.

    Example:
        >>> from tltf.cli import main
        >>> main(["backbones"])             # the same as running `tltf backbones`
        0
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = _parser(COMMANDS)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    from tltf.errors import TltfError

    try:
        return int(args._run(args) or 0)
    except TltfError as exc:
        if args.debug:
            raise
        print(f"tltf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, not a traceback; --debug shows it
        if args.debug:
            raise
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(
            f"tltf {args.command}: failed: {type(exc).__name__}: {first} "
            "(add --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
