"""What checking model files costs: SHA-256 and git-blob-id throughput of the functions `pull`,
`models --verify` and `bundle load` use (src/servestack/downloads/checksums.py), on a file of random bytes.

    python bench/checksums.py                  # a 1 GB file, 3 rounds
    python bench/checksums.py --size-mb 4000 --runs 5

The file is written once and read back through the page cache, as a file just downloaded is; a cold
disk reads slower. Prints the median MB/s and writes bench/results/checksums.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.output import machine, write_results
from servestack.downloads.checksums import git_blob_id_of, sha256_of

MB = 10**6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"sha256": [], "git blob id (sha1)": []}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.bin"
        with path.open("wb") as f:
            for _ in range(args.size_mb):
                f.write(os.urandom(MB))
        for _ in range(args.runs):
            for name, digest in (("sha256", sha256_of), ("git blob id (sha1)", git_blob_id_of)):
                started = time.perf_counter()
                digest(path)
                rates[name].append(args.size_mb / (time.perf_counter() - started))
    table = Table("hash", "median MB/s", "runs")
    for name, values in rates.items():
        table.add_row(name, f"{statistics.median(values):,.0f}", str(len(values)))
    Console().print(table)
    medians = {name: round(statistics.median(values)) for name, values in rates.items()}
    doc = {"machine": machine(), "size_mb": args.size_mb, "median_mb_per_s": medians, "runs": rates}
    print(f"wrote {write_results('checksums', doc, args.out)}")


if __name__ == "__main__":
    main()
