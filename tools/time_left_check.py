"""How well the progress lines' time left held: each line's "about X left" against the time the run then took
(its closing line's total minus the line's elapsed time), from a run's stderr.

    ESTBENCH_PROGRESS_EVERY=8 estbench report --out DIR 2> LOG
    python tools/time_left_check.py LOG [--every 8]

Prints, at most one a ``--every`` seconds, elapsed, said, then taken and their ratio; and the range of the ratio
over the lines from ``--every`` seconds on (a run's first line comes after that many) with more than 15 s left.
"""

from __future__ import annotations

import argparse
import re

LINE = re.compile(r"estbench: \d+/\d+ .* done, (\S+) elapsed, about (\S+) left")
DONE = re.compile(r"estbench: (\d+)/\1 (?:cells and training curves|cells) done in (\S+)")


def seconds(clock: str) -> int:
    parts = [int(p) for p in clock.split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--every", type=float, default=8.0)
    args = parser.parse_args()
    said, total = [], None
    for line in open(args.log, encoding="utf-8", errors="replace"):
        if (m := LINE.search(line)) and total is None:
            said.append((seconds(m[1]), seconds(m[2])))
        elif (m := DONE.search(line)) and total is None:
            total = seconds(m[2])  # the sweep's closing line (a confirmation rerun's comes after it)
    if total is None:
        raise SystemExit(f"{args.log}: no closing 'done in' line")
    ratios, last = [], -args.every
    for elapsed, left in said:
        taken = total - elapsed
        if elapsed - last >= args.every:
            last = elapsed
            print(f"{elapsed:5d} s elapsed: said {left:4d} s, took {taken:4d} s" + (f", {left / taken:.2f}x" if taken else ""))
        if taken > 15 and elapsed >= args.every:
            ratios.append(left / taken)
    if ratios:
        print(f"said / took, lines from {args.every:g} s on with more than 15 s left: "
              f"{min(ratios):.2f}-{max(ratios):.2f}x ({len(ratios)} lines)")


if __name__ == "__main__":
    main()
