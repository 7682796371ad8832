"""scripts/metarm_learning_curve.py on the smoke profile: evaluation points and training curves."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("metarm_learning_curve", REPO / "scripts" / "metarm_learning_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learning_curve_points_and_options(smoke_env):
    script = _load()
    out = smoke_env / "curve.json"
    assert script.main(["--task", "sentiment", "--profile", "smoke", "--steps", "3", "--eval-every", "2",
                        "--set", "outer_margin=implicit", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [p["step"] for p in data["points"]] == [0, 2, 3]
    for point in data["points"]:
        for split in ("held_out", "source"):
            acc = point[split]
            assert acc["pairs"] > 0 and 0.0 <= acc["accuracy"] <= 1.0
            assert acc["ci"][0] <= acc["accuracy"] <= acc["ci"][1]
    assert data["options"]["outer_margin"] == "implicit" and data["options"]["meta_steps"] == 3
    assert len(data["curves"]["outer_loss"]) == 3
    # the reward model moved: its scores, hence possibly accuracies, are those of a trained head
    assert any(x > 0 for x in data["curves"]["hypergrad_norm"])
