"""The shipped checkpoints in assets/: small, loadable, and their recorded metrics reproduce."""

import json
from pathlib import Path

import pytest

from workbench.configs.grids import GRIDS
from workbench.configs.teachers import TEACHERS as TEACHER_RECIPES
from workbench.data import Collator, load_dataset
from workbench.evaluate import evaluate
from workbench.models.io import load_checkpoint, weights_fingerprint

ASSETS = Path(__file__).resolve().parents[2] / "assets"
# (shapes-itm-teacher: the MCAD grid's image-text matching teacher, which re-ranks in the app's Retrieval tab)
# (shapes-vqa-base-teacher: the shapes-vqa teacher before its wider-wording fine-tune; the other teachers start from it)
TEACHERS = [
    "easy-vqa-teacher",
    "shapes-vqa-base-teacher",
    "shapes-vqa-teacher",
    "shapes-ve-teacher",
    "shapes-nlvr-teacher",
    "shapes-itm-teacher",
]
SHIPPED_STUDENTS = dict(GRIDS["dide"]["shipped"])  # {asset folder: (task, grid row)}, what `rebuild` builds
NOT_SHIPPED: dict[str, str] = {}  # a student listed here is an expected absence (a strict xfail says why)
STUDENTS = [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=NOT_SHIPPED[name])) if name in NOT_SHIPPED else name
    for name in SHIPPED_STUDENTS
]


def _assert_small_and_complete(folder: Path) -> None:
    for f in ("config.json", "model.safetensors", "workbench.json", "tokenizer.json"):
        assert (folder / f).exists(), f
    assert not [p for p in folder.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]
    size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    assert size_mb < 8, f"{folder.name} is {size_mb:.1f} MB"


@pytest.mark.parametrize("name", TEACHERS + STUDENTS)
def test_shipped_checkpoint_is_small_and_complete(name):
    folder = ASSETS / name
    _assert_small_and_complete(folder)
    meta = json.loads((folder / "workbench.json").read_text())
    test = meta["metrics"]["test"]
    assert test["n"] >= 3000 and set(test["per_type"]) == set(meta["qtypes"])
    assert meta["train_seconds"] > 0 and meta["train_config"]["dataset"] == meta["dataset"]


@pytest.mark.parametrize("name", TEACHERS + STUDENTS)
def test_recorded_accuracy_reproduces_on_a_test_subset(name):
    ck = load_checkpoint(ASSETS / name)
    data = load_dataset(ck.meta["dataset"], "test")
    n = 600
    got = evaluate(ck.model, data, Collator.for_model(ck.model, ck.tokenizer), limit=n)["accuracy"]
    recorded = ck.meta["metrics"]["test"]["accuracy"]
    # the subset is the first n of the recorded test set: binomial spread of a 600-sample estimate
    assert abs(got - recorded) < 3 * (recorded * (1 - recorded) / n) ** 0.5 + 0.01, (got, recorded)


RENAMED = {"shapes-vqa-teacher": "shapes-vqa-base-teacher"}  # {name a checkpoint was built under: its name now}


def test_easy_vqa_teacher_reaches_97_percent():
    meta = json.loads((ASSETS / "easy-vqa-teacher" / "workbench.json").read_text())
    assert meta["metrics"]["test"]["n"] == 9673  # the whole easy-VQA test split
    assert meta["metrics"]["test"]["accuracy"] >= 0.97
    # built by the committed recipe (`workbench rebuild --only easy-vqa`), on the pinned thread count
    config = meta["train_config"]
    assert config["seed"] == 0
    for key, value in TEACHER_RECIPES["easy-vqa"].items():
        recorded = Path(config[key]).name if key == "warm_start" else config[key]
        # built (2026-12-03) before the shapes-vqa teacher it warm-started from was renamed shapes-vqa-base-teacher
        # (same weights) and a fine-tune of it took the name
        recorded = RENAMED.get(recorded, recorded) if key == "warm_start" else recorded
        assert recorded == value, key
    # the recipe chosen on validation (issue 28): no oversampling, a validation split held out of training
    assert "oversample" not in TEACHER_RECIPES["easy-vqa"] and not config["oversample"]
    assert config["val_size"] > 0


def test_shipped_retrieval_student_is_an_mcad_student_whose_recorded_r_at_1_reproduces():
    from workbench.models.clip import load_dual_encoder
    from workbench.retrieval import DualEncoder, evaluate_retrieval

    folder = ASSETS / "shapes-retrieval-student"
    _assert_small_and_complete(folder)  # (its test metrics are R@K on 1,000 images, checked below)
    ck = load_dual_encoder(folder)
    meta = ck.meta
    assert meta["recipe"] == "mcad" and meta["dataset"] == "shapes-retrieval-hard" and meta["kind"] == "dual"
    from workbench.methods import get_method

    # MCAD as the paper describes it (the fusion teacher's joint features mixed into the dual teacher's), not the
    # scalar ablation the student shipped as until 2026-12-03
    config = get_method("mcad").config_from_dict(meta["train_config"]["recipe_args"])
    assert config.fusion_teacher and config.dual_teacher and config.gamma > 0 and config.alpha == 0
    assert config == get_method("mcad").config(dual_teacher=config.dual_teacher, fusion_teacher=config.fusion_teacher)
    # distilled from the shipped fusion teacher (the app's re-ranker), not from an earlier build of it
    from workbench.models.io import weights_fingerprint

    assert meta["teacher_fingerprints"]["fusion_teacher"] == weights_fingerprint(ASSETS / "shapes-itm-teacher")
    recorded = meta["metrics"]["test"]
    # the whole recorded gallery (1,000 images embed in seconds), so the numbers must match, not just be close
    got = evaluate_retrieval(
        DualEncoder(ck.model, ck.tokenizer), load_dataset(meta["dataset"], "test", 1000), timing=False
    )
    assert recorded["n_images"] == got["n_images"] == 1000
    for d in ("i2t", "t2i"):
        assert abs(got[d]["R@1"] - recorded[d]["R@1"]) <= 0.002, (d, got[d], recorded[d])


RELATIONAL = {"shapes-vqa-teacher": ("relation", "comparison"), "shapes-ve-teacher": ("relation",)}


@pytest.mark.parametrize("name,qtype", [(name, q) for name, qtypes in RELATIONAL.items() for q in qtypes])
def test_relational_types_reach_85_percent(name, qtype):
    meta = json.loads((ASSETS / name / "workbench.json").read_text())
    assert meta["metrics"]["test"]["per_type"][qtype]["accuracy"] >= 0.85


# the three defaults the 20-minute budget is set for (the NLVR teacher was added for distillation; its
# time, measured while four other runs shared the two cores, is in the table of docs/results.md). This reads the
# training time each checkpoint recorded when it was built; it times nothing (`workbench rebuild` measures).
# The rebuild on reworded text (2026-12-03) ran two training jobs at a time on one thread each (and the shapes-vqa
# teacher across two sessions, paused for measurements), so its recorded times are not the 2-idle-thread figures
# the budget is about; the same step counts took 951 s (shapes-vqa) and 18.1 min (easy-VQA) on two idle threads
# with the fixed templates (docs/lab-notes.md). A strict xfail: it fails once a rebuild on two idle threads is
# recorded within the budget, and the entry must then go.
BUSY_REBUILD = "rebuilt on one thread beside another training job (docs/lab-notes.md, 2026-12-03): recorded {} s"
# shapes-vqa: its base teacher's 3,152 s + the fine-tune's (two stages)
SLOW_RECORD = {
    "easy-vqa-teacher": 2420,
    "shapes-vqa-teacher": "3152 (base) + 294 (fine-tune)",
    "shapes-ve-teacher": 1605,
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=BUSY_REBUILD.format(SLOW_RECORD[n])))
        if n in SLOW_RECORD
        else n
        for n in ["easy-vqa-teacher", "shapes-vqa-teacher", "shapes-ve-teacher"]
    ],
)
def test_recorded_training_time_is_within_20_minutes(name):
    assert training_seconds(name) <= 20 * 60


def training_seconds(name: str) -> float:
    """The recorded time of `name` and of the earlier stage of its dataset it starts from (shapes-vqa: the base
    teacher, then the fine-tune), so a two-stage recipe counts whole."""
    meta = json.loads((ASSETS / name / "workbench.json").read_text())
    start = meta["train_config"].get("init_from")
    if start and Path(start).name != name and (ASSETS / Path(start).name).is_dir():
        earlier = json.loads((ASSETS / Path(start).name / "workbench.json").read_text())
        if earlier["dataset"] == meta["dataset"]:
            return meta["train_seconds"] + training_seconds(Path(start).name)
    return meta["train_seconds"]


@pytest.mark.parametrize("name", STUDENTS)
def test_shipped_student_is_a_dual_encoder_of_its_row_and_its_shipped_teacher(name):
    meta = json.loads((ASSETS / name / "workbench.json").read_text())
    task, row = SHIPPED_STUDENTS[name]
    assert meta["kind"] == "dual" and meta["recipe"] == GRIDS["dide"]["rows"][row]["method"]
    teacher = Path(meta["train_config"]["teacher"])
    assert teacher.name == f"{SHIPPED_STUDENTS[name][0]}-teacher"
    teacher_meta = json.loads((ASSETS / teacher.name / "workbench.json").read_text())
    assert meta["labels"] == teacher_meta["labels"] and meta["dataset"] == teacher_meta["dataset"]


# every distilled student (a `none` student learns nothing from its teacher, so records no fingerprint)
@pytest.mark.parametrize("name", [n for n, (_, row) in SHIPPED_STUDENTS.items() if row != "none"])
def test_shipped_student_records_the_fingerprint_of_its_shipped_teacher(name):
    meta = json.loads((ASSETS / name / "workbench.json").read_text())
    teacher = Path(meta["train_config"]["teacher"]).name
    assert meta.get("teacher_fingerprint") == weights_fingerprint(ASSETS / teacher)


# ----------------------------------------------------------------------------------------------
# issue 3's targets, recomputed from the DiDE results file (workbench experiment dide --collect)

DIDE = ASSETS / "results" / "dide.json"


@pytest.mark.parametrize(
    "task",
    [
        "shapes-nlvr",
        pytest.param(
            "shapes-ve",
            marks=pytest.mark.xfail(
                strict=True,
                reason="measured: dide student 74.9% vs teacher 100.0% (relation 59.3%); a from-scratch dual "
                "encoder with DiDE's concat head after 3,000 steps - see docs/results.md 'Distillation (DiDE)'",
            ),
        ),
        "easy-vqa",
    ],
)
def test_shipped_dide_student_within_1_5_points_of_its_teacher(task):
    """The shipped seed-0 checkpoint, one draw: a property of what ships, not the claim over seeds (that is the
    results file's `dide_gap_to_teacher_points`, a t-test over 5+ seeds, pending with fewer)."""
    student = json.loads((ASSETS / f"{task}-student" / "workbench.json").read_text())["metrics"]["test"]["accuracy"]
    teacher = json.loads((ASSETS / f"{task}-teacher" / "workbench.json").read_text())["metrics"]["test"]["accuracy"]
    gap = 100 * (teacher - student)
    assert gap <= 1.5, f"{task}: the shipped dide student is {gap:.2f} points below its teacher"


@pytest.mark.parametrize(
    "qtype",
    [
        "relation",
        "position",
        pytest.param(
            "comparison",
            marks=pytest.mark.xfail(
                strict=True, reason="measured over 5 seeds: dide 81.7 +- 0.6 vs none 82.2 +- 1.4 (p = 0.52)"
            ),
        ),
    ],
)
def test_dide_beats_none_on_relational_types_welch_over_five_seeds(qtype):
    from scipy import stats

    rows = json.loads(DIDE.read_text())["shapes-vqa"]["rows"]
    assert len(rows["dide"]["runs"]) >= 5 and len(rows["none"]["runs"]) >= 5
    dide, none = rows["dide"]["per_type"][qtype]["values"], rows["none"]["per_type"][qtype]["values"]
    test = stats.ttest_ind(dide, none, equal_var=False)
    assert test.statistic > 0 and test.pvalue < 0.05, f"{qtype}: Welch p = {test.pvalue:.3f}"


def _speed() -> dict:
    return json.loads((ASSETS / "results" / "speed.json").read_text())


def test_shipped_speed_results_are_the_docs_table_and_measure_the_shipped_pair():
    from workbench.bench import speed_table
    from workbench.report import read_section

    speed = _speed()
    results = (ASSETS.parent / "docs" / "results.md").read_text()
    assert read_section(results, "speed") == speed_table(speed).strip()  # the docs table is the command's output
    assert speed["models"]["teacher"]["path"] == "assets/shapes-vqa-teacher"
    assert speed["models"]["student"]["path"] == "assets/shapes-vqa-student-fast"
    student = load_checkpoint(ASSETS / "shapes-vqa-student-fast").model
    assert student.text_config.num_hidden_layers == speed["models"]["student"]["text_layers"] == 1


# The speed figures below are the ones `workbench bench` measured and recorded in assets/results/speed.json: these
# tests check the recorded numbers against the targets; they time nothing (the benchmark does).


def test_recorded_cached_student_batch_32_reaches_70_percent_of_its_flop_ratio():
    assert _speed()["ratios"]["32"]["student_cached_fraction_of_flop_ratio"] >= 0.7


def test_recorded_student_retrieval_1000_by_1000_speedup_is_at_least_500():
    (entry,) = [e for e in _speed()["retrieval"]["entries"] if e["n_images"] == 1000]
    assert entry["speedup"] >= 500


def test_recorded_cached_student_speedup_at_batch_1_is_at_least_5():
    assert _speed()["ratios"]["1"]["student_cached_speedup"] >= 5


def test_shipped_speed_table_is_the_one_the_readme_describes():
    speed = _speed()  # docs/results.md "Speed": both models in ONNX Runtime, one thread, batches 1 to 128
    assert speed["settings"]["runtime"] == "onnx"
    assert speed["machine"]["threads"] == 1 and speed["settings"]["batch_sizes"] == [1, 8, 32, 128]


def test_shipped_toy_ratios_are_medians_of_five_interleaved_rounds_with_their_range():
    speed = _speed()
    assert speed["settings"]["rounds"] >= 5
    for ratio in speed["ratios"].values():
        lo, hi = ratio["student_cached_speedup_range"]
        assert ratio["student_cached_speedup_rounds"] >= 5 and lo <= ratio["student_cached_speedup"] <= hi


def test_shipped_paper_scale_section_is_vilt_b32_sized_untrained_and_says_whether_targets_are_met():
    from workbench.bench import UNTRAINED, preset_table
    from workbench.configs.bench import PRESETS

    section = _speed()["paper_scale"]
    assert section["label"] == UNTRAINED and section["preset"] == "vilt-b32"
    assert section["size"] == PRESETS["vilt-b32"]["size"] and section["size"]["hidden_size"] == 768
    assert section["load_average"]["before"] is not None and section["load_average"]["after"] is not None
    table = preset_table(section)
    assert UNTRAINED in table
    assert set(section["students"]["student-fast"]["best"]) == {"1", "8", "32"}  # the targets' student: every batch
    for name, entry in section["students"].items():
        assert "1" in entry["best"]
        for run in entry["runs"].values():
            if "error" not in run:
                assert run["settings"]["rounds"] >= 5 and run["models"]["teacher"]["weights"] == UNTRAINED
        for target in entry["targets"].values():  # met, or the table says it is not (or was not measured)
            if target["met"] is False:
                assert f"{name}: cached student" in table and "NOT met" in table
        assert entry["targets"]["cached_speedup_batch_1"]["measured"] is not None
    coco = [e["coco5k"] for e in section["students"].values() if "coco5k" in e]
    assert coco and all(c["teacher"]["extrapolated"] and c["teacher"]["passes"] == 5000 * 25000 for c in coco)
    assert "COCO-5k" in table
