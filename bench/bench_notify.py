"""How fast ``snep notify`` starts: an HA manager runs it once per transition.

Runs ``python -X importtime -m snep notify backup --socket MISSING`` N times (the
request fails at connect, after every import: what is measured is the start) and
prints the median wall time and the median import time of what ``-m snep`` imports
after the interpreter's own start-up (site), with the heaviest modules.

    python bench/bench_notify.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def run_once(socket_path: str) -> tuple[float, int, dict[str, int]]:
    argv = [sys.executable, "-X", "importtime", "-m", "snep", "notify", "backup", "--socket", socket_path]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after_site = False
    total = 0
    top: dict[str, int] = {}
    for line in done.stderr.splitlines():
        match = LINE.match(line)
        if not match:
            continue
        cumulative, indent, name = int(match.group(2)), len(match.group(3)), match.group(4)
        if indent == 1 and name == "site":
            after_site = True
            continue
        if after_site and indent == 1:
            total += cumulative
            top[name] = cumulative
    return wall, total, top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        missing = os.path.join(tmp, "none.sock")
        results = [run_once(missing) for _ in range(args.runs)]
    walls = sorted(r[0] for r in results)
    imports = sorted(r[1] for r in results)
    print(f"snep notify start-up, {args.runs} runs (python {sys.version.split()[0]})")
    print(f"  wall time: median {statistics.median(walls) * 1000:.1f} ms (min {walls[0] * 1000:.1f} ms)")
    print(f"  imports after site: median {statistics.median(imports) / 1000:.1f} ms (min {imports[0] / 1000:.1f} ms)")
    names = {name for r in results for name in r[2]}
    medians = {name: statistics.median(r[2].get(name, 0) for r in results) for name in names}
    for name, us in sorted(medians.items(), key=lambda item: -item[1])[:8]:
        print(f"    {name:28} {us / 1000:6.2f} ms")
    bare = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=False)
        bare.append(time.perf_counter() - started)
    print(f"  for reference, python -c pass: median {statistics.median(bare) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
