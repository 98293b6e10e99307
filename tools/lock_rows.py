"""Prints weights.lock rows for every file of a bundle folder in this repository.

    python tools/lock_rows.py weights/prior-taef2 prior-taef2 [--lock-dir .] [--required]

`url` is repo://<path relative to the lock's folder>; sha256 and size are measured.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path


def rows(folder: Path, bundle: str, lock_dir: Path, required: bool, license: str) -> str:
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in {"MODEL_CARD.md", "LICENSE"}):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines = [
            "[[file]]",
            f'bundle = "{bundle}"',
            f'path = "{path.relative_to(folder).as_posix()}"',
            f'url = "repo://{path.resolve().relative_to(lock_dir.resolve()).as_posix()}"',
        ]
        if required:
            lines.append("required = true")
        lines += [f'sha256 = "{digest}"', f"size = {path.stat().st_size}", f'license = "{license}"']
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("bundle")
    parser.add_argument("--lock-dir", type=Path, default=Path("."))
    parser.add_argument("--required", action="store_true")
    parser.add_argument("--license", default="MIT")
    arguments = parser.parse_args()
    print(rows(arguments.folder, arguments.bundle, arguments.lock_dir, arguments.required, arguments.license), end="")
