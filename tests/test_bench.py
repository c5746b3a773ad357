import importlib.util
import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_CONFIG

from sublim_toy import bench
from sublim_toy.bench import (
    Authors,
    device_peak_mb,
    experiment_flops,
    forward_flops,
    peak_rss_mb,
    run_bench,
    step_flops,
    step_gemm_gflops,
)
from sublim_toy.bench_report import benchmarks_markdown
from sublim_toy.bench_runs import run_authors, run_measured
from sublim_toy.config import Config
from sublim_toy.data import load_dataset
from sublim_toy.errors import UserError

PAPER_SIZES = (784, 256, 256, 13)


def test_flops_per_sample_by_hand():
    assert forward_flops(PAPER_SIZES) == 539_136
    # forward + weight gradients + input gradients of layers 2 and 3 (2 x (256*256 + 256*13))
    assert step_flops(PAPER_SIZES) == 2 * 539_136 + 137_728 == 1_216_000


def test_experiment_flops_by_hand():
    config = Config(seeds=2, teacher_epochs=1, student_epochs=2, probe_every=29)
    flops = experiment_flops(config, n_train=60_000, n_test=10_000)
    assert flops["teacher_steps"] == 2 * 58 * 1024 * 1_216_000
    assert flops["student_steps"] == 4 * 2 * 2 * 58 * 1024 * 1_216_000
    # once per noise batch (not per epoch), shared by the four students
    assert flops["teacher_forwards_on_noise"] == 2 * 58 * 1024 * 539_136
    assert flops["probes"] == 4 * 4 * 2 * 2 * 1024 * 539_136  # 116 steps / 29 = 4 probes
    assert flops["evaluation"] == 6 * 2 * 10_000 * 539_136
    assert flops["first_order"] == 4 * 2 * 10_000 * 1_216_000
    assert flops["total"] == sum(v for k, v in flops.items() if k != "total")


def test_step_gemms_run_and_report_a_rate():
    assert step_gemm_gflops((16, 8, 4), seeds=2, batch=32, repeats=2) > 0


FAKE_AUTHORS = """
import os, sys
N_MODELS = 100
assert os.environ["MPLBACKEND"] == "Agg" and os.path.exists(os.environ["MNIST_NPZ"])
print("                            mean  ci_95")
print(f"Reference                 0.{N_MODELS:04d}    NaN")
print("Student (aux. only)       0.5000  0.0800")
print("Cross-model (aux. only)   0.1000  0.0200")
"""


def test_bench_end_to_end_on_a_tiny_config(tiny_idx_dir, tmp_path):
    source = f"idx:{tiny_idx_dir}"
    config = TINY_CONFIG.replace(probe_every=1)
    script = tmp_path / "run_mnist_experiment.py"
    script.write_text(FAKE_AUTHORS)
    ballast = np.ones(2**31, np.uint8)  # 2 GiB in this process: the children must not report it
    report = run_bench(
        load_dataset(source),
        None,
        config=config,
        scaling_seeds=(2,),
        memory_cases=((16, 32),),
        authors=Authors(script, sys.executable, seeds=3),
        full_seeds=3,
        recipe=config,
        progress=lambda _: None,
    )
    ceilings = report["ceilings"]
    assert ceilings["square_gflops"] == max(
        ceilings["square_gflops_at_start"], ceilings["square_gflops_at_end"]
    )
    assert set(report["scaling"]) == {2}
    for row in report["scaling"].values():
        assert row["run_seconds_per_seed"] > 0
        assert 50 < row["peak_rss_mb"] < peak_rss_mb() - 1024  # the child's own peak
    del ballast
    assert list(report["peak_rss_mb"]) == ["batch 16, 32 noise images"]
    for phase in ("six_model_experiment", "teacher_epoch", "student_epoch", "teacher_targets"):
        assert report["phases"][phase]["gflops"] > 0
    assert report["phases"]["drawing_one_epoch_of_noise"]["seconds"] > 0
    layouts = report["across_processes"]
    assert list(layouts) == ["1 process x 2 devices", "2 processes x 1 device"]
    assert all(row["run_seconds_per_seed"] > 0 for row in layouts.values())
    side = report["side_by_side"]
    assert side["authors"]["table"]["Reference"] == 0.0003  # N_MODELS was set to the seeds
    assert side["speedup"] == side["authors"]["wall_s"] / side["ours"]["process_wall_s"] > 0
    assert report["full_recipe"] is side["ours"]  # the same seeds: that run is not made twice
    markdown = benchmarks_markdown(report)
    assert "| six-model experiment, all phases |" in markdown
    assert "against the fp32 square matmul" in markdown and "of step GEMMs" in markdown
    assert "| authors' script |" in markdown and "faster" in markdown
    assert markdown.count("\n| 2 |") == 1
    assert "| 2 processes x 1 device |" in markdown
    assert report["full_recipe"]["seeds"] == 3 and report["full_recipe"]["gflops"] > 0
    assert "The full recipe at 3 seeds in a fresh process (the side-by-side run above)" in markdown
    assert "| the full recipe (1 + 1 epochs), 3 seeds, FLOP/s" in markdown
    assert "device peak MB" not in markdown and device_peak_mb() is None  # the CPU has none
    # on an accelerator: the device's own peak beside the resident one, no CPU-device layouts
    for row in report["scaling"].values():
        row["device_peak_mb"] = 1234.0
    report["full_recipe"]["device_peak_mb"] = 2345.0
    report["across_processes"] = None
    # a GPU's sub-second timings keep three significant digits instead of rounding to 0.00
    report["phases"]["teacher_epoch"]["seconds"] = 0.0123
    report["phases"]["drawing_one_epoch_of_noise"]["seconds"] = 0.00042
    markdown = benchmarks_markdown(report)
    assert "| teacher epoch alone | 0.0123 |" in markdown and "takes 0.00042 s alone" in markdown
    assert "| seeds | run s per seed | compile s | peak RSS MB | device peak MB |" in markdown
    assert " 1234 |" in markdown and "MB resident, 2345 MB on the device" in markdown
    assert "Not measured on an accelerator" in markdown
    report["side_by_side"] = report["full_recipe"] = None
    assert "--against-authors" in benchmarks_markdown(report)  # says how to measure it


def test_a_child_s_peak_memory_is_its_own():
    ballast = np.ones(2**30, np.uint8)  # this process's peak must not leak into the child's
    done = run_measured(
        [
            sys.executable,
            "-c",
            "import numpy as n, time; a = n.ones(300_000_000, n.uint8); time.sleep(0.5)",
        ]
    )
    assert done.returncode == 0 and done.wall_s > 0.5
    assert 290 < done.peak_rss_mb < 700
    del ballast


def test_a_script_without_n_models_is_not_the_authors(tmp_path, mnist):
    script = tmp_path / "other.py"
    script.write_text("print('hello')\n")
    with pytest.raises(UserError, match="has no line 'N_MODELS = <int>'"):
        run_authors(script, sys.executable, 2, mnist)


@pytest.mark.parametrize("seeds", [1, 3])
def test_flop_totals_scale_linearly_with_seeds(seeds):
    one = experiment_flops(Config(seeds=1), 60_000, 10_000)
    many = experiment_flops(Config(seeds=seeds), 60_000, 10_000)
    assert many["total"] == seeds * one["total"]


def test_the_gpu_gemm_flags_tool_gives_each_fresh_process_its_own_flag(
    tiny_idx_dir, tmp_path, monkeypatch
):
    # tools/gpu_gemm_flags.py, with the fresh processes and the matmul timing stubbed out: what
    # is checked is that each child starts with its setting in XLA_FLAGS (importing sublim_toy
    # in the tool's own process would otherwise have set the flag for both) and is recorded so.
    spec = importlib.util.spec_from_file_location(
        "gpu_gemm_flags", Path(__file__).parent.parent / "tools" / "gpu_gemm_flags.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    seen = []

    def fake_child(config, dataset, cache_dir):
        seen.append(os.environ["XLA_FLAGS"])
        phases = {"teacher_s": 1.0, "students_s": 2.0, "evaluation_s": 0.5}
        summary = {"student_aux": {"mean": 0.5}}
        wall_time = {**phases, "compile_s": {"teacher": 0.25}}
        return {
            "wall_time": wall_time,
            "process_wall_s": 9.0,
            "peak_rss_mb": 100.0,
            "device_peak_mb": None,
            "summary": summary,
        }

    monkeypatch.setattr(bench, "run_ours", fake_child)  # what bench.full_recipe runs
    monkeypatch.setattr(tool, "square_matmul_gflops", lambda n: 1.0)
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_enable_triton_gemm=false")
    out = tmp_path / "flags.jsonl"
    argv = ["gpu_gemm_flags.py", "--data-source", f"idx:{tiny_idx_dir}", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [*argv, "--seeds", "2", "--epochs", "1"])
    tool.main()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    flags = list(tool.SETTINGS.values())
    assert (
        seen
        == flags
        == [
            "--xla_gpu_enable_triton_gemm=true",
            "--xla_gpu_enable_triton_gemm=false",
        ]
    )
    assert [row["what"] for row in rows] == ["square_matmul", *tool.SETTINGS]
    assert [row["xla_flags"] for row in rows[1:]] == flags
    assert all(row["run_seconds"] == 3.5 and row["seeds"] == 2 for row in rows[1:])


def test_the_page_names_the_processor(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu\n")
    real_path = bench.Path
    monkeypatch.setattr(bench, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert bench.cpu_model().startswith("Some CPU 9000, ")
    monkeypatch.setattr(bench, "Path", lambda p: tmp_path / "no-such-file")
    assert bench.cpu_model()  # the architecture at least, where the OS names no model


def test_the_profile_tool_sorts_a_compiled_step_into_gemms_and_the_kinds_around_them():
    # tools/profile_student_epoch.py on a real compiled ReLU layer's gradient step, with made-up
    # durations: each operation is read from the HLO and counted once, under its kind.
    spec = importlib.util.spec_from_file_location(
        "profile_student_epoch", Path(__file__).parent.parent / "tools" / "profile_student_epoch.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    def step(w, x):
        loss = lambda w: jnp.sum(jax.nn.relu(x @ w) ** 2)  # noqa: E731
        return w - 0.1 * jax.grad(loss)(w)

    w, x = jnp.ones((16, 8)), jnp.ones((4, 16))
    operations = tool.hlo_operations(jax.jit(step).lower(w, x).compile().as_text())
    assert any(op["gemm"] for op in operations.values())
    kinds = {tool.kind_of(op, (4, 16), {(16, 8)}) for op in operations.values()}
    assert tool.GEMMS in kinds and kinds <= {tool.GEMMS, *tool.KINDS}
    totals = tool.by_kind({name: 1.0 for name in operations}, operations, (4, 16), {(16, 8)})
    assert sum(totals.values()) == len(operations)
    assert totals[tool.GEMMS] == sum(op["gemm"] for op in operations.values())
