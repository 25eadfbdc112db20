"""Build the agent's zipapp, in memory, from this package's source (the operator calls it).

The bytes depend only on the source: files in sorted order, fixed timestamps and modes, one
compression level. The same operator version therefore renders the same user_data, so an
unchanged cluster never looks drifted.

Docstrings and comment lines are blanked (not removed: line numbers in a traceback on a node
still match this repository's source), which saves about a quarter of the size that counts
against Nova's 64 KiB user_data limit.
"""

from __future__ import annotations

import ast
import io
import zipfile
from pathlib import Path

PACKAGE = "flexinfra_agent"   # the package's name inside the zipapp (relative imports only)
SHEBANG = b"#!/usr/bin/python3\n"
_MAIN = (f"import sys\nfrom {PACKAGE}.main import main\nsys.exit(main())\n").encode()
_EXCLUDE = {"bundle.py"}      # the operator's side only
_EPOCH = (1980, 1, 1, 0, 0, 0)


def agent_sources() -> dict[str, bytes]:
    here = Path(__file__).resolve().parent
    return {p.name: p.read_bytes() for p in sorted(here.glob("*.py")) if p.name not in _EXCLUDE}


def slim(source: bytes) -> bytes:
    """Blank docstrings (an empty literal stays on their first line) and full-line comments."""
    lines = source.decode().split("\n")
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                          | ast.AsyncFunctionDef):
            continue
        first = node.body[0] if node.body else None
        if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)):
            start, end = first.lineno - 1, first.end_lineno - 1
            indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
            lines[start] = f'{indent}""'
            for i in range(start + 1, end + 1):
                lines[i] = ""
    out = ["" if line.lstrip().startswith("#") else line.rstrip() for line in lines]
    return "\n".join(out).encode()


def build_zipapp() -> bytes:
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w") as zf:
        entries = [("__main__.py", _MAIN)]
        entries += [(f"{PACKAGE}/{name}", slim(data)) for name, data in agent_sources().items()]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, data, compresslevel=9)
    return buf.getvalue()
