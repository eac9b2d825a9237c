"""Run every benchmark, one after the other, and print their tables.

    python3 dev.py bench              # or: .venv/bin/python bench/run.py
    python3 dev.py bench --quick      # a shorter run of each (about four minutes)
    python3 dev.py bench --only per_call,startup --update-readme

Each benchmark runs in its own process (``bench/<name>.py``) with the arguments below;
``--update-readme`` writes the combined output, with the machine it ran on, between
the markers of bench/README.md's "Latest results" section. Results vary with the
machine's load: run it when nothing else is busy, and read the min-max ranges.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"

# name -> (arguments of a full run, arguments of a quick run)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "per_call": ([], ["--rounds", "2", "--calls", "3000"]),
    "encoding": ([], ["--rounds", "2", "--spans", "256"]),
    "per_request": ([], ["--rounds", "1", "--seconds", "2", "--variants",
                         "plain,ours,upstream", "--endpoints", "recommendations,health",
                         "--no-span-count"]),
    "startup": ([], ["--runs", "2", "--importtime-runs", "1"]),
    "memory": ([], ["--requests", "600", "--variants", "plain,ours", "--settle", "1"]),
    "gc_pauses": ([], ["--rounds", "1", "--seconds", "3", "--variants",
                       "plain,ours-nofreeze,ours"]),
    "html_report": ([], ["--spans", "20000", "--runs", "1"]),
    # Instruction counts under callgrind: the judge of the overhead goals (issue 12).
    "instructions": ([], ["--quick"]),
}


def run_one(name: str, args: list[str]) -> str:
    """The benchmark's report (its stdout); its progress lines go to our stderr."""
    started = time.monotonic()
    print(f"== {name} {' '.join(args)}", file=sys.stderr, flush=True)
    result = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args],
                            stdout=subprocess.PIPE, text=True, check=False)
    print(f"   {name}: {time.monotonic() - started:.0f} s, exit {result.returncode}",
          file=sys.stderr, flush=True)
    if result.returncode != 0:
        return f"{result.stdout}\n({name} failed with exit status {result.returncode})"
    return result.stdout


def _sections(block: str) -> tuple[str, dict[str, str]]:
    """The preamble of a results block and its ``### name`` sections, in order."""
    preamble, *parts = re.split(r"^### ", block, flags=re.M)
    sections = {}
    for part in parts:
        name, _, body = part.partition("\n")
        sections[name.strip()] = body.strip()
    return preamble.strip(), sections


def update_readme(preamble: str, sections: dict[str, str], partial: bool) -> None:
    """Write the results between the README's markers; a partial run (``--only``)
    replaces only its own sections and keeps the others."""
    content = README.read_text()
    if START not in content or END not in content:
        raise SystemExit(f"{README} has no {START} ... {END} section")
    old = content.split(START, 1)[1].split(END, 1)[0]
    if partial:
        old_preamble, merged = _sections(old)
        merged.update(sections)
        preamble = f"{old_preamble}\n\nUpdated by a partial run: {preamble}"
        sections = merged
    body = "\n\n".join([preamble, *(f"### {name}\n\n{text}" for name, text in
                                    sections.items())])
    block = f"{START}\n{body.strip()}\n{END}"
    README.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block,
                             content, flags=re.S))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--only", help="comma-separated benchmark names: "
                        + ", ".join(BENCHMARKS))
    parser.add_argument("--update-readme", action="store_true",
                        help="write the results into bench/README.md")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}")
    started = time.monotonic()
    command = "bench/run.py" + (" --quick" if args.quick else "") + (
        f" --only {','.join(names)}" if args.only else "")
    preamble = (f"Machine: {machine()}.\nRun: `{command}` on "
                f"{time.strftime('%Y-%m-%d %H:%M')}.")
    sections: dict[str, str] = {}
    failed = False
    for name in names:
        full, quick = BENCHMARKS[name]
        output = run_one(name, quick if args.quick else full)
        failed |= "failed with exit status" in output
        sections[name] = output.strip()
        print(f"\n### {name}\n\n{output.strip()}\n", flush=True)
    total = time.monotonic() - started
    preamble += f" ({total:.0f} s)"
    print(f"(all benchmarks: {total:.0f} s)")
    if args.update_readme:
        update_readme(preamble, sections, partial=bool(args.only))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
