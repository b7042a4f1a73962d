"""The method registry: every entry is well-formed, its config survives JSON, and names are listed once."""

import dataclasses
import json
from pathlib import Path

import pytest

from workbench.methods import METHODS, get_method, method_names
from workbench.methods.base import Method, register

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_is_well_formed_and_its_config_round_trips_through_json(name):
    m = get_method(name)
    assert m.name == name and m.summary and m.task in ("answer", "retrieval") and m.student in ("dual", "fusion")
    config = m.config()
    assert isinstance(config, m.Config)
    saved = json.loads(json.dumps(dataclasses.asdict(config)))
    assert m.config_from_dict(saved) == config
    assert m.describe()["config"] == dataclasses.asdict(config)


def test_the_registry_holds_every_method_and_baseline_in_order():
    assert method_names(task="answer") == (
        "none", "kd", "hard", "dide", "dide-pt", "dide-pt-task-attn", "mad", "mad-naive", "mad-no-select",
        "mad-no-conf",
    )  # fmt: skip
    assert method_names(task="retrieval") == (
        "clip", "clipkd", "affinity", "mcad", "mcad-scalar", "mcad-nofused", "mcad-nofeat",
    )  # fmt: skip
    assert method_names(student="fusion") == ("hard", "mad", "mad-naive", "mad-no-select", "mad-no-conf")


def test_ablations_differ_from_their_method_only_in_their_switches():
    full, naive = get_method("mad").config(), get_method("mad-naive").config()
    assert dataclasses.replace(full, token_selection=False, confidence=False) == naive
    mcad = get_method("mcad").config()
    assert get_method("mcad-nofused").config() == dataclasses.replace(mcad, gamma=0.0)
    assert get_method("mcad-scalar").config() == dataclasses.replace(mcad, gamma=0.0, alpha=1.0)
    assert get_method("mcad-nofeat").config() == dataclasses.replace(mcad, feature=0.0)
    assert get_method("dide").config().hard == 0.0  # the official fine-tuning: hard labels off


def test_unknown_names_and_options_are_refused_with_what_exists():
    with pytest.raises(ValueError, match="registered: none, kd, hard"):
        get_method("dide2")
    with pytest.raises(ValueError, match=r"no option\(s\) \['t3i'\]"):
        get_method("dide").config_from_dict({"t3i": 1.0})
    with pytest.raises(TypeError):
        get_method("dide").config(t3i=1.0)
    with pytest.raises(ValueError, match="registered twice"):
        register(get_method("dide"))
    with pytest.raises(ValueError, match="task must be"):
        Method("x", "x", "caption", "dual", Config=get_method("dide").Config, run=lambda *a, **k: {})


def test_configs_saved_before_the_registry_load_flat():
    """Shipped checkpoints keep their options nested ({"weights": ..., "layers": ...}, {"mad": ...})."""
    old = {"weights": {"hard": 0.0, "soft": 1.0, "t2i": 0.5, "i2t": 1.0, "temperature": 1.0}, "layers": [-1]}
    assert get_method("dide").config_from_dict(old).t2i == 0.5
    # the recipe_args the retrieval student shipped until 2026-12-03 saved (an MCAD run before issue 28)
    saved = {
        "dual_teacher": "runs/mcad/teachers/dual/model",
        "fusion_teacher": "runs/mcad/teachers/fusion-itm/model",
        "weights": {"contrastive": 1.0, "kl": 1.0, "feature": 1.0, "alpha": 1.0, "beta": 0.5, "temperature": 1.0,
                    "fusion_topk": 3, "feature_loss": "cosine"},
    }  # fmt: skip
    config = get_method("mcad").config_from_dict(saved)
    # saved before the fused features: the scalar method, whatever the recipe name
    assert config.fusion_teacher and config.alpha > 0 and config.gamma == 0.0
    assert config == get_method("mcad-scalar").config(
        **{k: getattr(config, k) for k in ("dual_teacher", "fusion_teacher")}
    )


def test_no_module_outside_the_registry_lists_method_names():
    """Menus, CLI choices and grids read the registry: a literal list of recipe names elsewhere goes stale."""
    offenders = []
    for path in [*(ROOT / "workbench").rglob("*.py"), ROOT / "app.py"]:
        if "methods" in path.parts or "configs" in path.parts:  # the grids name the methods of their rows: data
            continue
        text = path.read_text()
        if '"dide", "dide-pt"' in text or '"mcad-nofused", "mcad-nofeat"' in text or '"mad-naive", "mad-no' in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_every_method_a_grid_names_is_registered():
    from workbench.configs.grids import GRIDS

    named = {row["method"] for grid in GRIDS.values() for row in grid["rows"].values()}
    assert named <= set(METHODS), named - set(METHODS)
