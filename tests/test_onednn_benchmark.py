"""benchmarks/onednn.py: each setting runs in its own process and really switches TensorFlow's
kernels; the doc and the JSON carry both timings and their ratio."""

import json

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("onednn")


def test_one_model_both_settings(bench, tmp_path):
    out = tmp_path / "onednn.md"
    bench.main(["--models", "mobilenet_v2", "--steps", "2", "--repeats", "1", "--out", str(out)])
    doc = out.read_text()
    assert "| mobilenet_v2 (the main job's" in doc and "benchmarks/onednn.py --steps 2" in doc
    (row,) = json.loads(out.with_suffix(".json").read_text()).values()
    assert len(row["off_ms"]) == len(row["on_ms"]) == 1
    assert row["off_ms"][0] > 0 and row["on_ms"][0] > 0
    assert row["speedup"] == pytest.approx(row["off_ms"][0] / row["on_ms"][0])


def test_a_child_reports_the_kernels_it_ran_with(bench):
    # run_child raises when TensorFlow's report disagrees with the variable it was given.
    assert bench.run_child("mobilenet_v2", "1", 1)["onednn"] is True


@pytest.mark.parametrize("flag", ["--steps", "--repeats"])
def test_counts_must_be_positive(bench, flag, capsys):
    with pytest.raises(SystemExit):
        bench.main([flag, "0"])
    assert f"{flag} must be >= 1. Received: 0" in capsys.readouterr().err
