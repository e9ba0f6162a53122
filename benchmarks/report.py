"""What every benchmark's output file says: the machine and versions it was measured on, the
command that measured it, then its table (Markdown), written whole or not at all."""

from __future__ import annotations

import os
import platform
import shlex
import sys


def machine():
    """One line naming the CPU, its cores and the versions measured."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import numpy
    import sklearn

    import gaussmix

    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy "
            f"{numpy.__version__}, scikit-learn {sklearn.__version__}, gaussmix "
            f"{gaussmix.__version__}")


def command_line():
    """The command as it was typed, from the repository root."""
    script = os.path.relpath(sys.argv[0])
    return " ".join(["python", script, *map(shlex.quote, sys.argv[1:])])


def write_markdown(path, *tables):
    """Write ``tables`` (Markdown strings, each perhaps led by a line of text) under a line
    naming the machine and the command; through a temporary file, so that an interrupted run
    leaves the previous file as it was."""
    text = (f"Measured on {machine()}, by `{command_line()}`.\n\n"
            + "\n\n".join(table.strip() for table in tables) + "\n")
    temporary = f"{path}.partial"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def emit(tables, out, versions=""):
    """Print ``tables``, and write them to ``out`` (when given) under the machine line and
    ``versions`` (a sentence naming the peers' versions)."""
    for table in tables:
        print(table, "\n")
    if out:
        write_markdown(out, *([versions] if versions else []), *tables)


def markdown_table(header, rows):
    """A Markdown table from a list of column names and rows of cells (already formatted)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
