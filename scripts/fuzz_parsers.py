"""Long soak of the parser fuzz tests (tests/unit/fuzz) with many more inputs than CI tries.

    python scripts/fuzz_parsers.py [--examples 5000] [-k EXPR]

Runs the fuzz tests under the hypothesis profile `soak` (fresh random inputs each run,
--examples per test, any input taking over 10 s fails as a hang) and prints how many inputs
each test tried. A failure prints hypothesis's smallest failing input and a
@reproduce_failure line to replay it. Exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_TEST = re.compile(r"^(tests/\S+::(\S+)):$")
_PHASE = re.compile(r"^\s+- during (\w+) phase \(([\d.]+) seconds\):$")
_COUNTS = re.compile(r"^\s+- (\d+) passing, (\d+) failing, and (\d+) invalid test cases$")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="inputs per test")
    parser.add_argument("-k", dest="select", help="only tests matching this pytest -k EXPR")
    args = parser.parse_args()
    env = os.environ | {
        "HYPOTHESIS_PROFILE": "soak",
        "BBACKUP_FUZZ_EXAMPLES": str(args.examples),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=0"]
    command += ["--hypothesis-show-statistics", "tests/unit/fuzz"]
    if args.select:
        command += ["-k", args.select]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    heading = run.stdout.find("Hypothesis Statistics")
    statistics_at = run.stdout.rfind("\n", 0, heading) + 1 if heading >= 0 else -1
    # Everything pytest said, except the per-test statistics, which are summed up below.
    print(run.stdout if statistics_at < 0 else run.stdout[:statistics_at], end="")
    print(run.stderr, end="", file=sys.stderr)
    tried: dict[str, tuple[int, int, int, float]] = {}
    test = phase = ""
    seconds = 0.0
    for line in run.stdout[max(statistics_at, 0) :].splitlines():
        if match := _TEST.match(line):
            test = match.group(2)
        elif match := _PHASE.match(line):
            phase, seconds = match.group(1), float(match.group(2))
        elif (match := _COUNTS.match(line)) and phase == "generate":
            passing, failing, invalid = map(int, match.groups())
            tried[test] = (passing, failing, invalid, seconds)
    print(f"\n{'inputs':>8} {'failing':>7} {'invalid':>7} {'seconds':>8}  test")
    for name, (passing, failing, invalid, spent) in tried.items():
        print(f"{passing + failing:>8} {failing:>7} {invalid:>7} {spent:>8.1f}  {name}")
    print(f"{sum(p + f for p, f, _i, _s in tried.values()):>8} inputs in all")
    print(run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
