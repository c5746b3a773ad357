import numpy as np
import pytest

from sublim_toy.bench import (
    benchmarks_markdown,
    experiment_flops,
    forward_flops,
    peak_rss_mb,
    run_bench,
    step_flops,
    step_gemm_gflops,
)
from sublim_toy.config import Config
from sublim_toy.data import load_dataset

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


def test_bench_end_to_end_on_a_tiny_config(tiny_idx_dir, tmp_path):
    source = f"idx:{tiny_idx_dir}"
    config = Config(
        seeds=2,
        hidden=(8,),
        teacher_epochs=1,
        student_epochs=1,
        batch_size=16,
        noise_images=32,
        probe_every=1,
    )
    ballast = np.ones(2**31, np.uint8)  # 2 GiB in this process: the children must not report it
    report = run_bench(
        load_dataset(source),
        None,
        config=config,
        scaling_seeds=(2,),
        memory_cases=((16, 32),),
        progress=lambda _: None,
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
    markdown = benchmarks_markdown(report)
    assert "| six-model experiment, all phases |" in markdown
    assert "of step GEMMs" in markdown and "drawing one epoch of noise" in markdown
    assert markdown.count("\n| 2 |") == 1


@pytest.mark.parametrize("seeds", [1, 3])
def test_flop_totals_scale_linearly_with_seeds(seeds):
    one = experiment_flops(Config(seeds=1), 60_000, 10_000)
    many = experiment_flops(Config(seeds=seeds), 60_000, 10_000)
    assert many["total"] == seeds * one["total"]
