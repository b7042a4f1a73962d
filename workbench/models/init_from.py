"""Start a dual student's towers from local pretrained folders (the weight transplants).

* `student=<ViLT folder>`: both towers from one ViLT checkpoint, as the official DiDE code does (its two towers
  are each a whole ViLT loaded from the same `load_path`). The text tower must then be the "vilt" variant
  (`DualStudent.text_arch`): ViLT's text embeddings -> text tower embeddings; ViLT's patch projection, image
  [CLS] and image positions -> image tower embeddings; ViLT's blocks and final LayerNorm -> both encoders.
  A ViT folder works too: the official code's fallback without a `load_path` (ImageNet ViT blocks in both
  towers, the text embeddings fresh).
* `image=<ViT or ViLT folder>`: the image tower alone (a ViLT folder gives its vision part).
* `text=<BERT folder>` (the "bert" text tower) or `text=<ViLT or ViT folder>` (the "vilt" one): the text tower
  alone.

ViLT adds a modality-type embedding after the embeddings (row 0 to text, row 1 to an image; the official towers
keep it). The student has none, so it is folded in exactly: row 0 into the text embedding LayerNorm's bias, row
1 into the image position embeddings ([CLS] included). ViLT's pooler is not copied: the student fuses the raw
[CLS] states (docs/student-init.md lists what differs).

Only safetensors and JSON are read (`workbench.models.sharded.load_weights`: one file or shards). Every copy is
checked first: a shape that differs raises one `CheckpointError` naming the tensors and both shapes; a text
position table may be longer than the student's (its first rows are taken: the positions the student uses).
`init_student` returns an `InitReport`: each student tensor copied (with its source) and each left fresh.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from workbench.errors import CheckpointError
from workbench.models.dual import DualStudent, dual_configs
from workbench.models.sharded import has_weights, load_weights

logger = logging.getLogger(__name__)

# config.json `model_type` -> the kind of source; the folder's weights carry these architecture prefixes
KINDS = {"vilt": "vilt", "vit": "vit", "bert": "bert"}
NAMES = {"vilt": "ViLT", "vit": "ViT", "bert": "BERT"}
PRE_NORM = ("vilt", "vit")  # sources whose blocks are pre-LayerNorm: they fit the image tower and the "vilt" text tower
PREFIXES = ("vilt.", "vit.", "bert.")

# one pre-LayerNorm block: the names on disk (ViLT's, and HF ViT's saved format) -> HF `ViTLayer`'s modules
BLOCK = {
    "attention.attention.query": "attention.q_proj",
    "attention.attention.key": "attention.k_proj",
    "attention.attention.value": "attention.v_proj",
    "attention.output.dense": "attention.o_proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "layernorm_before": "layernorm_before",
    "layernorm_after": "layernorm_after",
}
_LEGACY_BLOCK = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_NEW_BLOCK = re.compile(r"^layers\.(\d+)\.(.+)\.(weight|bias)$")


@dataclass
class Source:
    """A pretrained folder's weights: `state` without the architecture prefix (`vilt.`, `vit.`, `bert.`)."""

    folder: Path
    kind: str  # "vilt" | "vit" | "bert"
    config: dict
    state: dict[str, torch.Tensor]

    def name(self, key: str) -> str:
        return f"{self.folder}: {key}"


@dataclass
class InitReport:
    """What a transplant did: `copied` {student tensor: where it came from}, `fresh` (student tensors left as
    initialised), `unused` (source tensors not copied), `notes` (checks skipped, rows taken)."""

    copied: dict[str, str] = field(default_factory=dict)
    fresh: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"copied": self.copied, "fresh": self.fresh, "unused": self.unused, "notes": self.notes}

    def summary(self) -> str:
        """A few lines for the run's log: the counts, the fresh tensors, the notes."""
        lines = [f"student init: {len(self.copied)} tensors copied, {len(self.fresh)} fresh"]
        lines += [f"  fresh: {', '.join(self.fresh)}"] if self.fresh else []
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def read_source(folder: str | Path, option: str, allowed: tuple[str, ...]) -> Source:
    """The folder's config and weights; `option` (e.g. "--text-init") names it in errors; `allowed` kinds."""
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{option} {path}: no config.json (a Hugging Face model folder is expected)")
    if not has_weights(path):
        raise CheckpointError(f"{option} {path}: no model.safetensors (nor a sharded index); pickle weights are "
                              "never read: re-save the model with save_pretrained")  # fmt: skip
    try:
        config = json.loads((path / "config.json").read_text())
    except ValueError as e:
        raise CheckpointError(f"{option} {path}: config.json is not valid JSON ({e})") from e
    model_type = config.get("model_type") if isinstance(config, dict) else None
    kind = KINDS.get(model_type)
    if kind not in allowed:
        raise CheckpointError(
            f"{option} {path}: a {model_type!r} folder; expected "
            + " or ".join(f"a {NAMES[k]} folder" for k in allowed)
        )
    state = {}
    for key, value in load_weights(path).items():
        key = next((key[len(p) :] for p in PREFIXES if key.startswith(p)), key)
        state[key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")] = value
    return Source(path, kind, config, state)


def folder_kind(folder: str | Path) -> str | None:
    """ "vilt", "vit" or "bert" from the folder's config.json; None when it cannot be read."""
    try:
        return KINDS.get(json.loads((Path(folder) / "config.json").read_text()).get("model_type"))
    except (OSError, ValueError, AttributeError):
        return None


def text_arch_for(student: str | None = None, text: str | None = None) -> str | None:
    """The text tower a student initialised from these folders needs: "vilt" for a ViLT (or ViT) text source,
    "bert" for a BERT one, None when no text source is given (the run's own choice stands)."""
    source = text or student
    if source is None:
        return None
    return "vilt" if folder_kind(source) in PRE_NORM else "bert"


def sized_for_init(size: dict, student: str | None = None, image: str | None = None, text: str | None = None) -> dict:
    """The student's size (`TrainConfig.size`) for these folders: the text tower the text source needs
    (`text_arch`; a `size` that asks for the other one raises), and no more text positions than a shorter
    source table has (ViLT's 40; a run's collator already stops at the teacher's limit). `image` changes
    nothing: its shapes must match the student's."""
    arch = text_arch_for(student, text)
    if arch is None:
        return dict(size)
    if size.get("text_arch", arch) != arch:
        raise CheckpointError(f"{text or student} is a {arch} folder: it fits the {arch!r} text tower, "
                              f"but the student's size asks for text_arch {size['text_arch']!r}")  # fmt: skip
    out = {**size, "text_arch": arch} if arch != "bert" else dict(size)
    config = json.loads((Path(text or student) / "config.json").read_text())
    limit = config.get("max_position_embeddings")
    default = inspect.signature(dual_configs).parameters["max_text_len"].default
    if "max_text_len" not in size and isinstance(limit, int) and 0 < limit < default:
        out["max_text_len"] = limit
    return out


# ---------------------------------------------------------------------------------------------------------------
# the plans: {student tensor: Planned}


class Planned(NamedTuple):
    """One student tensor's value (None: the source lacks it), where it comes from, and the source tensors read
    ((folder, key) pairs)."""

    value: torch.Tensor | None
    where: str
    keys: tuple[tuple[str, str], ...]


def _take(src: Source, key: str) -> Planned:
    return Planned(src.state.get(key), src.name(key), ((str(src.folder), key),))


def _plus_modality(src: Source, key: str, row: int, what: str) -> Planned:
    """`key` plus row `row` of ViLT's modality-type embedding (folded in: the student adds none)."""
    types = "embeddings.token_type_embeddings.weight"
    base, rows = src.state.get(key), src.state.get(types)
    value = None if base is None or rows is None else base + rows[row]
    return Planned(
        value,
        f"{src.name(key)} + {types}[{row}] (ViLT's {what} modality type, folded in)",
        ((str(src.folder), key), (str(src.folder), types)),
    )


def _blocks(src: Source, tower: str, depth: int, plan: dict) -> None:
    """The source's pre-LayerNorm blocks (its first `depth`) and final LayerNorm into `tower` (ViT layers)."""
    available = int(src.config.get("num_hidden_layers", 0))
    if depth > available:
        raise CheckpointError(f"{src.folder} has {available} layers; the student's {tower} has {depth}")
    for key in src.state:
        m = _LEGACY_BLOCK.match(key) or _NEW_BLOCK.match(key)
        if not m or int(m.group(1)) >= depth:
            continue
        module = m.group(2) if m.group(2) in BLOCK.values() else BLOCK.get(m.group(2))
        if module is not None:
            plan[f"{tower}.layers.{m.group(1)}.{module}.{m.group(3)}"] = _take(src, key)
    for param in ("weight", "bias"):
        plan[f"{tower}.layernorm.{param}"] = _take(src, f"layernorm.{param}")


def image_plan(src: Source, model: DualStudent) -> dict:
    """Patch projection, image [CLS], image positions (ViLT: plus its image modality row), blocks, final norm."""
    plan: dict = {}
    for key in ("patch_embeddings.projection.weight", "patch_embeddings.projection.bias", "cls_token"):
        plan[f"image_tower.embeddings.{key}"] = _take(src, f"embeddings.{key}")
    pos = "embeddings.position_embeddings"
    plan[f"image_tower.{pos}"] = _take(src, pos) if src.kind == "vit" else _plus_modality(src, pos, 1, "image")
    if model.stem is not None:  # our own fusion folders may carry the convolutional stem too
        for key in model.stem.state_dict():
            plan[f"stem.{key}"] = _take(src, f"stem.{key}")
    _blocks(src, "image_tower", model.vision_config.num_hidden_layers, plan)
    return plan


def text_plan(src: Source, model: DualStudent) -> dict:
    """The text tower from a BERT folder (name for name), a ViLT one (its text embeddings, its text modality
    row folded into the embedding LayerNorm's bias, its blocks and final LayerNorm) or a ViT one (its blocks and
    final LayerNorm; the text embeddings stay fresh, as the official code's towers without a `load_path`)."""
    if (src.kind in PRE_NORM) != (model.text_arch == "vilt"):
        need = "the 'vilt' text tower (text_arch: vilt)" if src.kind in PRE_NORM else "the 'bert' text tower"
        raise CheckpointError(f"{src.folder} is a {src.kind} folder: it fits {need}; this student's text tower "
                              f"is {model.text_arch!r}")  # fmt: skip
    if src.kind == "bert":
        return {f"text_tower.{key}": _take(src, key) for key in model.text_tower.state_dict()}
    plan: dict = {}
    _blocks(src, "text_tower", model.text_config.num_hidden_layers, plan)
    if src.kind == "vit":
        return plan
    emb = "embeddings.text_embeddings"
    plan |= {
        f"text_tower.embeddings.{key}": _take(src, f"{emb}.{key}")
        for key in (
            "word_embeddings.weight",
            "position_embeddings.weight",
            "token_type_embeddings.weight",
            "LayerNorm.weight",
        )  # fmt: skip
    }
    plan["text_tower.embeddings.LayerNorm.bias"] = _plus_modality(src, f"{emb}.LayerNorm.bias", 0, "text")
    return plan


# ---------------------------------------------------------------------------------------------------------------
# checks and the copy


def _check_config(src: Source, config, tower: str) -> None:
    """Heads, activation and LayerNorm epsilon must be the student's: the weights alone do not show them."""
    wrong = [
        f"{key} {src.config.get(key)!r} (the student's {tower}: {getattr(config, key)!r})"
        for key in ("num_attention_heads", "hidden_act", "layer_norm_eps")
        if key in src.config and src.config[key] != getattr(config, key)
    ]
    if wrong:
        raise CheckpointError(f"{src.folder} does not fit the student's {tower}: its {'; '.join(wrong)}")


def _fit(plan: dict, target: dict[str, torch.Tensor], report: InitReport) -> dict[str, torch.Tensor]:
    """The tensors to copy, checked: every planned one exists in the source and has the student's shape (a
    longer text position table gives its first rows). One error lists every problem."""
    problems, values = [], {}
    for name, (value, where, _keys) in plan.items():
        want = target[name].shape
        if value is None:
            problems.append(f"{where.split(' + ')[0]} is missing (for the student's {name})")
        elif name.endswith("position_embeddings.weight") and value.shape[0] > want[0] and value.shape[1:] == want[1:]:
            values[name] = value[: want[0]]
            report.notes.append(f"{name}: the first {want[0]} of {value.shape[0]} rows of {where}")
        elif value.shape != want:
            hint = " (give the student at most that many text positions: max_text_len)" if name.endswith(
                "position_embeddings.weight") else ""  # fmt: skip
            problems.append(f"{where} has shape {list(value.shape)}, the student's {name} {list(want)}{hint}")
        else:
            values[name] = value
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CheckpointError("the pretrained weights do not fit the student: " + "; ".join(problems[:5]) + more)
    return values


def check_vocabulary(folder: str | Path, tokenizer, report: InitReport) -> None:
    """Word embeddings mean tokens: the folder's tokenizer (when it has one) must be the run's."""
    from workbench.models.io import read_tokenizer  # io imports the model classes; imported here, no cycle

    theirs = read_tokenizer(folder)
    if theirs is None or tokenizer is None:
        why = "the folder has no tokenizer" if theirs is None else "no tokenizer given"
        report.notes.append(f"{folder}: vocabulary not checked ({why})")
        return
    if theirs.get_vocab() != tokenizer.get_vocab():
        raise CheckpointError(f"{folder}'s tokenizer differs from the student's ({len(theirs)} vs {len(tokenizer)} "
                              "tokens): its word embeddings would be read as other words")  # fmt: skip


def _plans(model: DualStudent, student, image, text, tokenizer, report: InitReport) -> tuple[dict, list[Source]]:
    """{student tensor: Planned} from the folders (a tower's own folder overrides `student` for it)."""
    plan: dict = {}
    sources = []
    if student is not None:
        src = read_source(student, "--student-init", PRE_NORM)
        _check_config(src, model.vision_config, "towers")
        if image is None:
            plan.update(image_plan(src, model))
        if text is None:
            plan.update(text_plan(src, model))
            check_vocabulary(student, tokenizer, report)
        sources.append(src)
    if image is not None:
        src = read_source(image, "--image-init", ("vit", "vilt"))
        _check_config(src, model.vision_config, "image tower")
        plan.update(image_plan(src, model))
        sources.append(src)
    if text is not None:
        src = read_source(text, "--text-init", ("bert", *PRE_NORM))
        _check_config(src, model.text_config, "text tower")
        plan.update(text_plan(src, model))
        check_vocabulary(text, tokenizer, report)
        sources.append(src)
    for src in sources:  # a shallower tower takes the first layers
        for tower, config in (("image_tower", model.vision_config), ("text_tower", model.text_config)):
            depth, available = config.num_hidden_layers, int(src.config.get("num_hidden_layers", 0))
            if depth < available and any(k.startswith(f"{tower}.") and v.where.startswith(f"{src.folder}: ")
                                         for k, v in plan.items()):  # fmt: skip
                report.notes.append(f"{tower}: the first {depth} of the {available} layers of {src.folder}")
    return plan, sources


@torch.no_grad()
def init_student(
    model: DualStudent,
    student: str | Path | None = None,
    image: str | Path | None = None,
    text: str | Path | None = None,
    tokenizer=None,
) -> InitReport:
    """Copy pretrained weights into `model`'s towers: `student` (a ViLT folder) into both, then `image` (ViT or
    ViLT) and `text` (BERT or ViLT) into one each (overriding `student` for that tower). `tokenizer`: the run's,
    checked against a text source's. The fusion head, classifier and retrieval projections stay fresh."""
    report = InitReport()
    plan, sources = _plans(model, student, image, text, tokenizer, report)
    target = model.state_dict()
    for name, value in _fit(plan, target, report).items():
        target[name].copy_(value)
        report.copied[name] = plan[name].where
    # a pretrained patch projection keeps its bias (the data-dependent centring is for a fresh one)
    model.pretrained_patches |= "image_tower.embeddings.patch_embeddings.projection.bias" in report.copied
    report.fresh = sorted(set(target) - set(report.copied))
    used = {pair for name in report.copied for pair in plan[name].keys}
    report.unused = sorted(f"{s.folder}: {k}" for s in sources for k in s.state if (str(s.folder), k) not in used)
    logger.info(
        "student init from %s\n%s\ncopied: %s", [str(s.folder) for s in sources], report.summary(), report.copied
    )
    return report
