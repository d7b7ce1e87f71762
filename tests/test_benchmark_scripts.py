"""Every benchmark script imports (a renamed helper in another script once broke
``peer_lightgcn.py`` unnoticed until it was run). The peers' workers, which import the
peers' own packages in their environments, are left out."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
WORKERS = {"_recbole_worker", "_coldrec_toolkit_worker"}
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem not in WORKERS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_benchmark_script_imports(script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(script)
    assert module.__file__ == str(BENCHMARKS / f"{script}.py")
    sys.modules.pop(script, None)


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))


@pytest.mark.usefixtures("scripts")
def test_coldstart_baselines_run_seed_by_seed_the_models_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import coldstart_baselines

    models = list(coldstart_baselines.MODELS)
    kept = tmp_path / "coldstart_ml100k"
    for model in models:
        (kept / model / "seed0").mkdir(parents=True)
    (kept / "bprmf" / "seed1").mkdir()
    runs: list[list[str]] = []
    monkeypatch.setattr(coldstart_baselines, "RESULTS", tmp_path)
    monkeypatch.setattr(coldstart_baselines, "run_coldrec",
                        lambda command, every_minute: runs.append(command))  # fmt: skip
    coldstart_baselines.run_missing("ml100k")
    assert len(runs) == 4  # seed 0 is kept whole; CLCRec runs alone
    shared = [m for m in models if m != "clcrec"]
    for run, seed, wanted in ((runs[0], 1, shared[1:]), (runs[1], 1, ["clcrec"]),
                              (runs[2], 2, shared), (runs[3], 2, ["clcrec"])):  # fmt: skip
        base = coldstart_baselines.command("ml100k")
        assert run[: len(base)] == base
        assert set(run[len(base) :: 2]) == {"--set"}
        settings = run[len(base) + 1 :: 2]
        assert settings[:2] == [f"seeds=[{seed}]", "baselines={}"]
        assert [s.split("=")[0] for s in settings[2:]] == [f"baselines.{m}" for m in wanted]
    sys.modules.pop("coldstart_baselines", None)


@pytest.mark.usefixtures("scripts")
def test_run_coldrec_calls_back_at_the_end_and_raises_on_failure() -> None:
    from beauty_baselines import run_coldrec

    calls: list[int] = []
    run_coldrec(["--help"], every_minute=lambda: calls.append(1))
    assert calls == [1]
    with pytest.raises(subprocess.CalledProcessError):
        run_coldrec(["no-such-command"], every_minute=lambda: calls.append(1))
    assert calls == [1, 1]


@pytest.mark.usefixtures("scripts")
def test_the_frozen_diagnostic_runs_the_toolkits_dropoutnet_with_its_vectors_held(
    tmp_path: Path,
) -> None:
    import shlex

    import peer_coldrec_toolkit as toolkit

    frozen = toolkit.toolkit_arguments("beauty", "DropoutNet-frozen", 1, 5)
    assert frozen == toolkit.toolkit_arguments("beauty", "DropoutNet", 1, 5)
    assert frozen[frozen.index("--model") + 1] == "DropoutNet"
    # the worker reads the flag right after its output folder (argv[2])
    words = shlex.split(toolkit.worker_command(tmp_path, "DropoutNet-frozen", frozen))
    assert words[3:5] == ["DropoutNet-frozen", "--frozen-backbone"]
    assert words[5:] == frozen
    plain = shlex.split(toolkit.worker_command(tmp_path, "DropoutNet", frozen))
    assert "--frozen-backbone" not in plain
    sys.modules.pop("peer_coldrec_toolkit", None)


@pytest.mark.usefixtures("scripts")
def test_the_epochs_diagnostic_runs_the_toolkits_aldi_for_its_own_epochs(tmp_path: Path) -> None:
    import argparse
    import shlex

    import peer_coldrec_toolkit as toolkit

    args = argparse.Namespace(backbone_epochs=100, epochs=100, epochs_of={"ALDI": 40})
    assert toolkit.model_epochs(args, "ALDI-5-epochs") == 5
    assert toolkit.model_epochs(args, "ALDI") == 40
    assert toolkit.model_epochs(args, "DropoutNet-frozen") == 100
    short = toolkit.toolkit_arguments("beauty", "ALDI-5-epochs", 0, 5)
    assert short == toolkit.toolkit_arguments("beauty", "ALDI", 0, 5)
    words = shlex.split(toolkit.worker_command(tmp_path, "ALDI-5-epochs", short))
    assert words[3] == "ALDI-5-epochs" and "--frozen-backbone" not in words
    sys.modules.pop("peer_coldrec_toolkit", None)


@pytest.mark.usefixtures("scripts")
def test_order_agreement_counts_same_orders_and_averages_kendall_tau(tmp_path: Path) -> None:
    import pandas as pd

    import llm_rank

    points = {"first": [[3, 2, 1], [3, 2, 1]], "other": [[3, 2, 1], [1, 2, 3]]}
    for name, users in points.items():
        (tmp_path / name).mkdir()
        pd.DataFrame([{"split": "test", "user_idx": user, "model_position": position + 1,
                       "item_idx": 10 * user + position, "llm_points": float(p)}
                      for user, row in enumerate(users) for position, p in enumerate(row)]
                     ).to_parquet(tmp_path / name / "rankings.parquet")  # fmt: skip
    agreement = llm_rank.order_agreement(tmp_path / "first", tmp_path / "other")
    # user 0: the same order (τ 1); user 1: reversed (τ −1)
    assert agreement == {"users": 2, "same_order": 1, "mean_kendall_tau": 0.0}
    sys.modules.pop("llm_rank", None)


@pytest.mark.usefixtures("scripts")
def test_cold_slots_counts_places_and_hits_by_hand() -> None:
    import numpy as np
    from scipy import sparse

    import cold_slots

    cold = np.array([False, False, True, True, False])
    top = np.array([[2, 0, 3, -1], [4, 1, 0, 2]])  # user 0: 2 cold of 4 places, one empty
    targets = sparse.csr_array(np.array([[0, 0, 1, 0, 0], [1, 1, 0, 0, 1]]))
    figures = cold_slots.places(top, targets, cold)
    assert figures["cold_share"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert figures["cold_hits_per_1000"] == pytest.approx(1000 * 1 / 3)  # item 2 for user 0
    assert figures["warm_hits_per_1000"] == pytest.approx(1000 * 3 / 4)  # 4, 1, 0 for user 1
    sys.modules.pop("cold_slots", None)


@pytest.mark.usefixtures("scripts")
def test_a_cold_prior_adds_to_a_rankings_own_scores_of_cold_candidates() -> None:
    import numpy as np

    import cold_slots
    from coldrec.data.candidates import Candidates

    ranked = Candidates(users=np.array([4, 7]), items=np.array([[0, 2, -1], [3, 1, 2]]),
                        scores=np.array([[0.9, 0.5, 0.0], [0.8, 0.7, 0.4]]))  # fmt: skip
    cold = np.array([False, False, True, False])
    shown = np.array([[3, 1, 2]])  # user 7's candidates, as the protocol passes them
    scored = cold_slots.ColdPrior(ranked, cold, 0.5).score(np.array([7]), shown)
    np.testing.assert_allclose(scored, [[0.8, 0.7, 0.9]])
    with pytest.raises(ValueError, match="candidates only"):
        cold_slots.ColdPrior(ranked, cold, 0.5).score(np.array([7]))
    sys.modules.pop("cold_slots", None)
