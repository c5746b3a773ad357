"""One benchmark run in a fresh process.

    python -m sublim_toy.bench_child CONFIG SOURCE CACHE NAME [COORDINATOR PROCESSES ID]

Runs `run_experiment` on the dataset `NAME` from `SOURCE` (cache `CACHE`, empty for the default)
with the config fields in the JSON `CONFIG`, and prints one JSON line: the run's wall times,
this process's peak resident memory and, on an accelerator, its device's. A fresh process,
because peak memory is a high-water mark: the benchmark's own earlier runs would otherwise set
it. With COORDINATOR PROCESSES ID, this
process is one of a run across PROCESSES processes (`distributed.join`); only process 0 prints.
"""

from __future__ import annotations

import json
import sys

from sublim_toy.bench import device_peak_mb, peak_rss_mb
from sublim_toy.config import Config
from sublim_toy.data import load_dataset
from sublim_toy.distributed import Join, is_main_process, join
from sublim_toy.experiment import run_experiment


def main(argv: list[str]) -> None:
    fields, source, cache_dir, name, *across = argv
    if across:
        coordinator, processes, process_id = across
        join(Join(coordinator, int(processes), int(process_id)))
    config = Config(**{**json.loads(fields), "hidden": tuple(json.loads(fields)["hidden"])})
    results = run_experiment(config, load_dataset(source, cache_dir or None, name=name))
    keep = ("wall_time", "summary", "paired_difference")
    if is_main_process():
        memory = {"peak_rss_mb": peak_rss_mb(), "device_peak_mb": device_peak_mb()}
        print(json.dumps({**{key: results[key] for key in keep}, **memory}))


if __name__ == "__main__":
    main(sys.argv[1:])
