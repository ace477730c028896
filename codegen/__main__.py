"""``python -m codegen [--check]``: regenerate, or verify that the committed output is current."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codegen.render import ROOT, RenderError, render
from codegen.spec import SpecError


def main(argv: list[str] | None = None) -> int:
    """Run the generator; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m codegen",
        description="Generate the transform module and docs/mappings.md from spec/.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; fail if a committed generated file differs from a fresh render",
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="project root (default: this checkout)"
    )
    args = parser.parse_args(argv)
    try:
        outputs = render(args.root)
    except SpecError as error:
        print(f"spec has {len(error.problems)} problem(s):", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except RenderError as error:
        print(error, file=sys.stderr)
        return 1
    stale = []
    for relative, text in outputs.items():
        path = args.root / relative
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(relative)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        for relative in stale:
            print(f"{relative} is stale: run `make generate`", file=sys.stderr)
        return 1
    if args.check:
        print(f"{len(outputs)} generated file(s) match spec/", file=sys.stderr)
    else:
        current = len(outputs) - len(stale)
        print(f"wrote {len(stale)} file(s); {current} already current", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
