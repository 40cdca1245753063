"""`mnistbench <command> [arguments]`: the console script pyproject.toml declares, and
`python -m commands <command>`; `mnistbench <command> --help` shows each command's arguments."""

from __future__ import annotations

import importlib.util
import runpy
import sys

# command -> its module in commands/; `python -m commands.<module>` runs the same code
COMMANDS = {
    "gate": "gate",
    "reproduced": "reproduced",
    "spot-check": "spot_check",
    "grid": "grid",
    "benchmark": "benchmark",
    "leaderboard": "leaderboard",
    "predict": "predict",
    "plots-template": "plots_template",
}


def summary(module: str) -> str:
    """The first line of a command module's docstring, without importing it (no torch for --help)."""
    import ast

    source = importlib.util.find_spec(f"commands.{module}").origin
    with open(source) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    return doc.splitlines()[0] if doc else ""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary(module)}" for name, module in COMMANDS.items()]
    return (
        "usage: mnistbench <command> [arguments]   (mnistbench <command> --help: its arguments)\n\ncommands:\n"
        + "\n".join(lines)
    )


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(usage())
        raise SystemExit(0 if len(sys.argv) >= 2 else 2)
    name, args = sys.argv[1], sys.argv[2:]
    if name not in COMMANDS:
        raise SystemExit(f"mnistbench: error: no command {name!r}; the commands: {', '.join(COMMANDS)}")
    sys.argv = [f"mnistbench {name}", *args]  # argparse's prog, in usage lines and errors
    runpy.run_module(f"commands.{COMMANDS[name]}", run_name="__main__")


if __name__ == "__main__":
    main()
