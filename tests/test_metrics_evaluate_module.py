"""The shipped ``evaluate`` module loads offline and agrees with ``preference_report``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ood_pl_bench.errors import UsageError
from ood_pl_bench.metrics.hf_evaluate import available_modules, module_path


def test_module_path_points_at_the_installed_script():
    path = Path(module_path("pl_accuracy"))
    assert path.is_dir() and (path / "pl_accuracy.py").is_file() and (path / "README.md").is_file()
    assert "pl_accuracy" in available_modules()


def test_module_path_unknown_name_lists_the_available_ones():
    with pytest.raises(UsageError, match="pl_accuracy"):
        module_path("no_such_metric")
    with pytest.raises(UsageError):
        module_path("../hf_evaluate")


def test_script_imports_the_package_by_absolute_name():
    text = (Path(module_path("pl_accuracy")) / "pl_accuracy.py").read_text(encoding="utf-8")
    assert "from ood_pl_bench.metrics.preference import" in text
    assert "from ." not in text and "import ." not in text


_SCRIPT = r"""
import json, sys
import evaluate
from ood_pl_bench.metrics.hf_evaluate import module_path
from ood_pl_bench.metrics.preference import preference_report

pc = [-1.0, -2.0, -3.0, -4.0, -1.5, -6.0, -2.5]
pr = [-2.0, -2.0, -1.0, -5.0, -0.5, -6.5, -2.0]
rc = [-1.5, -2.0, -2.0, -4.0, -1.0, -6.0, -2.5]
rr = [-2.0, -2.0, -2.0, -4.5, -0.5, -6.0, -2.5]
pl = evaluate.load(module_path("pl_accuracy"))
for a, b in [(0, 1), (1, 5), (5, 7)]:  # uneven batches of 1, 4 and 2 pairs
    pl.add_batch(policy_chosen_logps=pc[a:b], policy_rejected_logps=pr[a:b],
                 reference_chosen_logps=rc[a:b], reference_rejected_logps=rr[a:b])
batched = pl.compute(beta=0.5)
pl2 = evaluate.load(module_path("pl_accuracy"))
full = pl2.compute(policy_chosen_logps=pc, policy_rejected_logps=pr, reference_chosen_logps=rc,
                   reference_rejected_logps=rr, beta=0.5, full_report=True, seed=3)
reference = preference_report(pc, pr, rc, rr, beta=0.5, seed=3)
same = evaluate.load(module_path("pl_accuracy")).compute(
    policy_chosen_logps=pc, policy_rejected_logps=pr, reference_chosen_logps=pc, reference_rejected_logps=pr)
json.dump({"batched": batched, "full": full, "reference": reference, "same": same}, sys.stdout)
"""


@pytest.mark.slow
def test_evaluate_load_offline_uneven_batches(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_MODULES_CACHE": str(tmp_path / "hf" / "modules"),
        "HF_EVALUATE_CACHE": str(tmp_path / "hf" / "evaluate"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    ref = out["reference"]
    # outcomes 1, 0.5, 0, 1, 0, 1, 0 -> 3.5 / 7, computed over all pairs, not per batch
    assert out["batched"]["pl_accuracy"] == 0.5
    assert out["batched"]["n"] == 7 and out["batched"]["pl_ties"] == 1
    for key in ("pl_accuracy", "pl_likelihood_accuracy", "pl_margin", "pl_ties", "pl_bt_loglik"):
        assert out["batched"][key] == pytest.approx(ref[key]["value"]), key
    assert out["full"] == ref
    assert out["same"]["pl_accuracy"] == 0.5 and out["same"]["pl_ties"] == 7
