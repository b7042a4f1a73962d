"""Checkpoint folders: save and load, our own and real Hugging Face ViLT ones.

A folder holds `config.json` (the model's HF config; for the dual student both towers' configs),
`model.safetensors`, the tokenizer files and `workbench.json` (kind, task, labels, recipe,
metrics), and, written by training, `train_vocab.json` (the words of its training texts: `Checkpoint.train_vocab`;
`workbench.coverage`). Only JSON and safetensors are ever read: never pickle, never code from the folder.

A folder with no `workbench.json` whose config says `model_type: vilt` (e.g.
`ViltForQuestionAnswering.save_pretrained(...)`) loads as a fusion teacher with its `id2label`. A HF ViLT folder
of another head (`ViltForMaskedLM`, e.g. ViLT's pre-trained MLM+ITM checkpoint, `ViltModel`,
`ViltForImageAndTextRetrieval`) loads only as a starting point (`load_checkpoint(..., for_init=True)`, what
`--init-from` does): its encoder is kept, its head dropped, the classifier fresh (`for_task` then sizes it for
the task's labels and, for NLVR2, copies the image type embedding, as ViLT does). Weights may be
one `model.safetensors` or shards with a `model.safetensors.index.json` (`workbench.models.sharded`).

Images: a folder holding a `preprocessor_config.json` (every HF ViLT folder; a student distilled from one,
saved with `image_spec`) reads images as HF's ViLT processor does, aspect ratio kept, with a pixel mask
(`Checkpoint.image_spec`, `Checkpoint.image_pipeline`); a HF ViLT folder without one gets HF's defaults. Our
own folders read square images of `image_size`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import AutoTokenizer, BertConfig, BertTokenizer, ViltConfig, ViTConfig
from transformers.initialization import no_init_weights

from workbench.errors import CheckpointError
from workbench.models import image_size
from workbench.models.dual import DualStudent
from workbench.models.fusion import FusionTeacher
from workbench.models.preprocess import ViltImageSpec, collate_images
from workbench.models.sharded import INDEX, SINGLE, has_weights, load_weights, weights_digest

FORMAT_VERSION = 1
TRAIN_VOCAB = "train_vocab.json"  # the words of the training texts, beside the weights (`workbench.coverage`)
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


@dataclass
class Checkpoint:
    model: nn.Module
    tokenizer: object
    meta: dict
    path: Path

    @property
    def labels(self) -> list[str]:
        return self.meta["labels"]

    @property
    def image_size(self) -> int:
        return self.meta["image_size"]

    @functools.cached_property
    def train_vocab(self) -> frozenset[str] | None:
        """The words of the texts the model was trained on (normalised: `workbench.coverage.normalise`), read once
        from the folder's `train_vocab.json`; None when the folder has none (a HF ViLT folder, an older run)."""
        return None if self.path is None else read_train_vocab(self.path)

    @property
    def image_spec(self) -> ViltImageSpec | None:
        """How the model reads images: the folder's `preprocessor_config.json` (HF's defaults for a HF ViLT
        folder without one), or None for the square pipeline of our own checkpoints."""
        try:
            spec = ViltImageSpec.from_folder(self.path)
        except (ValueError, TypeError) as e:  # bad JSON, or fields of the wrong type
            raise CheckpointError(f"{self.path / 'preprocessor_config.json'} cannot be read: {e}") from e
        if spec is None and self.meta.get("source") == "huggingface-vilt":
            return ViltImageSpec()
        return spec

    @property
    def image_pipeline(self):
        """The collator's `image_pipeline` for this model (`vilt_pipeline(image_spec)`), or None (square)."""
        spec = self.image_spec
        return None if spec is None else vilt_pipeline(spec)


def vilt_pipeline(spec: ViltImageSpec):
    """An `ImagePipeline` for `workbench.data.Collator`: HF ViLT's preprocessing of each example's images, padded
    to the batch's largest size, with the pixel mask (picklable, for DataLoader workers)."""
    return partial(collate_images, spec=spec)


def preprocessor_config(spec: ViltImageSpec) -> dict:
    """`spec` as a HF `preprocessor_config.json` (what `ViltImageSpec.from_dict` and `ViltImageProcessor` read)."""
    fields = dataclasses.asdict(spec)
    shortest = fields.pop("shortest_edge")
    return {"image_processor_type": "ViltImageProcessor", "size": {"shortest_edge": shortest}, **fields}


def _config_dict(model: nn.Module) -> dict:
    if isinstance(model, FusionTeacher):
        return model.config.to_dict()
    if isinstance(model, DualStudent):
        return {
            "model_type": "workbench-dual",
            "vision": model.vision_config.to_dict(),
            "text": model.text_config.to_dict(),
            "embed_dim": model.image_proj.out_features,
        }
    raise TypeError(f"cannot save a {type(model).__name__}")


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temp file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; results and checkpoints are meant to be shared
    os.replace(tmp, path)


def save_checkpoint(
    model: nn.Module, tokenizer, path: str | Path, meta: dict, image_spec: ViltImageSpec | None = None
) -> Path:
    """Write the folder under a temp name, then swap it in: a crash leaves the old one intact. `image_spec`: the
    aspect-ratio image preprocessing the model was trained with (a student of a HF ViLT teacher takes the
    teacher's `Checkpoint.image_spec`), written as `preprocessor_config.json`; None: square images."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only
    try:
        model = getattr(model, "module", model)  # unwrap DDP
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(_config_dict(model), indent=2))
        tokenizer.save_pretrained(tmp)
        if image_spec is not None:
            (tmp / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(image_spec), indent=2))
        full = {"format_version": FORMAT_VERSION, "kind": model.kind, "num_images": model.num_images, **meta}
        (tmp / "workbench.json").write_text(json.dumps(full, indent=2))
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def weights_fingerprint(folder: str | Path) -> str | None:
    """A short hash of a checkpoint's weights (which teacher a student was distilled from): of its
    `model.safetensors`, or of its shards in name order; None for a folder without weights."""
    return weights_digest(folder)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
        raise CheckpointError(f"{path} is not valid JSON ({e}); the checkpoint folder is damaged") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a JSON {type(data).__name__}, not an object; the folder is damaged")
    return data


def _check_meta(meta: dict, where: Path) -> None:
    """Field types of workbench.json (or of the metadata read from a ViLT config.json)."""
    labels, n_images = meta["labels"], meta.get("num_images", 1)
    for key, ok, expected in (
        ("kind", isinstance(meta["kind"], str), "a string"),
        ("task", isinstance(meta["task"], str), "a string"),
        ("labels", isinstance(labels, list) and all(isinstance(x, str) for x in labels), "a list of strings"),
        ("num_images", type(n_images) is int and n_images in (1, 2), "1 or 2"),
    ):
        if not ok:
            raise CheckpointError(f"{where}: the field {key!r} is {str(meta.get(key))[:80]!r}, expected {expected}")


def _build(kind: str, config: dict, meta: dict) -> nn.Module:
    num_labels, num_images = len(meta["labels"]), meta.get("num_images", 1)
    if kind == "fusion":
        return FusionTeacher(ViltConfig.from_dict(config), max(num_labels, 1), num_images, init_positions=False)
    if kind == "dual":
        return DualStudent(
            ViTConfig.from_dict(config["vision"]),
            BertConfig.from_dict(config["text"]),
            num_labels,
            num_images,
            embed_dim=config.get("embed_dim", 128),
        )
    raise CheckpointError(f"unknown model kind {kind!r} in workbench.json")


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    task: str | None = None,
    kind: str | None = None,
    for_init: bool = False,
) -> Checkpoint:
    """Load a checkpoint folder (ours or a HF ViLT one). Raises `CheckpointError` saying what is wrong.

    `for_init`: the folder is a starting point to fine-tune (`--init-from`), so a HF ViLT folder of a head
    without task labels (MLM, retrieval, the bare model) loads too: its encoder, no labels, a fresh classifier."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint folder {path} does not exist"
            if not path.exists()
            else f"{path} is a file; a checkpoint is a folder (config.json, model.safetensors, ...)"
        )
    if not has_weights(path):
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(
                f"{path} holds only pickle weights ({', '.join(pickles)}); the workbench never unpickles files "
                "(they can run code). Re-save the model with safetensors: save_pretrained(folder)."
            )
        raise CheckpointError(f"{path} has no {SINGLE} (nor a sharded {INDEX}); is this a checkpoint folder?")
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path} has no config.json")
    config = _read_json(path / "config.json")
    if (path / "workbench.json").exists():
        meta = _read_json(path / "workbench.json")
        for key in ("kind", "task", "labels"):
            if key not in meta:
                raise CheckpointError(f"{path / 'workbench.json'} lacks the field {key!r}")
        _check_meta(meta, path / "workbench.json")
    elif config.get("model_type") == "vilt":
        meta = _hf_vilt_meta(config, any_head=for_init)
        _check_meta(meta, path / "config.json")
    else:
        raise CheckpointError(f"{path} has neither workbench.json nor a ViLT config.json (model_type: vilt)")
    if kind is not None and meta["kind"] != kind:
        raise CheckpointError(f"{path} holds a {meta['kind']} model, expected a {kind} model")
    if task is not None and meta["task"] != task:
        raise CheckpointError(f"{path} was trained for task {meta['task']!r}, expected {task!r}")
    try:
        # every weight is about to come from the file (`_load_weights_into` refuses a missing one), so the
        # constructors' random initialisation is skipped: it was 3 of the 4 s of loading a ViLT-B-sized dual
        # student on a CPU. A pre-training head's classifier starts fresh, so that build initialises as usual.
        # Either way a load leaves torch's random generator where it was: what a seeded run draws after loading
        # a teacher (its student's initialisation) does not depend on the teacher
        skip_init = no_init_weights() if meta.get("head") not in PRETRAINING_HEADS else contextlib.nullcontext()
        with torch.random.fork_rng(devices=[]), skip_init:
            model = _build(meta["kind"], config, meta)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - bad fields raise TypeError, ValueError, huggingface_hub's validation errors...
        raise CheckpointError(f"{path / 'config.json'} does not describe a {meta['kind']} model ({e!r})") from e
    _load_weights_into(model, path, meta)
    if not any((path / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise CheckpointError(f"{path} has no tokenizer files (tokenizer.json or vocab.txt)")
    try:
        tokenizer = _load_tokenizer(path)
    except Exception as e:  # noqa: BLE001 - tokenizer loading raises many types; report them as one
        raise CheckpointError(f"could not load the tokenizer in {path}: {e}") from e
    size = image_size(model)
    if meta.setdefault("image_size", size) != size:
        raise CheckpointError(
            f"{path / 'workbench.json'} gives image_size {meta['image_size']!r}; the model in config.json takes {size}"
        )
    return Checkpoint(model.to(device).eval(), tokenizer, meta, path)


def _load_weights_into(model: nn.Module, path: Path, meta: dict) -> None:
    """The folder's weights into `model`, every tensor accounted for (a pre-training head's dropped, its
    classifier left fresh); raises `CheckpointError` naming the weights file."""
    weights = path / SINGLE if (path / SINGLE).is_file() else path / INDEX  # named in errors
    state = load_weights(path)  # one file or every shard; a damaged one raises CheckpointError naming it
    fresh: tuple[str, ...] = ()
    if meta.get("head") in PRETRAINING_HEADS:  # its encoder only: the head's tensors dropped, a new classifier
        state, fresh = _vilt_encoder(state), ("classifier.", "vilt.pooler.")
    head = state.get("classifier.3.weight")
    if head is not None and meta["labels"] and head.shape[0] != len(meta["labels"]):
        raise CheckpointError(
            f"{path}: the classifier has {head.shape[0]} outputs but workbench.json lists {len(meta['labels'])} labels"
        )
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"{weights} does not fit the {meta['kind']} model in config.json: {e}") from e
    missing = [k for k in result.missing_keys if not k.endswith("position_ids") and not k.startswith(fresh)]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{weights} does not fit the {meta['kind']} model in config.json: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}"
        )


def _load_tokenizer(path: Path):
    """BERT tokenizers (ours and ViLT's) load directly: AutoTokenizer would also read config.json and
    warn about our model types, which it does not know."""
    tok_config = path / "tokenizer_config.json"
    cls = _read_json(tok_config).get("tokenizer_class", "") if tok_config.exists() else ""
    loader = BertTokenizer if cls.startswith("BertTokenizer") else AutoTokenizer
    tokenizer = loader.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    # settings that load but break tokenizing (a list as model_max_length, ...) fail here, not at the first ask
    if not isinstance(tokenizer.model_max_length, int) or isinstance(tokenizer.model_max_length, bool):
        raise ValueError(f"model_max_length {tokenizer.model_max_length!r} is not a whole number")
    tokenizer("is there a red circle?", truncation=True, max_length=16)
    return tokenizer


# HF ViLT heads without task labels: loadable only as a starting point (`for_init`); the encoder is kept
PRETRAINING_HEADS = ("ViltForMaskedLM", "ViltModel", "ViltForImageAndTextRetrieval", "ViltForTokenClassification")


def _hf_vilt_meta(config: dict, any_head: bool = False) -> dict:
    arch = (config.get("architectures") or ["ViltForQuestionAnswering"])[0]
    if any_head and arch in PRETRAINING_HEADS:
        return {"kind": "fusion", "task": "pretraining", "labels": [], "num_images": 1,
                "source": "huggingface-vilt", "head": arch}  # fmt: skip
    id2label = config.get("id2label") or {}
    try:
        labels = [id2label[k] for k in sorted(id2label, key=int)]
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise CheckpointError(f"config.json: id2label is not an {{index: label}} mapping ({e!r})") from e
    if arch not in ("ViltForQuestionAnswering", "ViltForImagesAndTextClassification"):
        also = " (to fine-tune from it on a task, use it as --init-from)" if arch in PRETRAINING_HEADS else ""
        raise CheckpointError(
            f"a {arch} checkpoint cannot be used as a teacher; expected "
            f"ViltForQuestionAnswering or ViltForImagesAndTextClassification{also}"
        )
    nlvr = arch == "ViltForImagesAndTextClassification"
    return {
        "kind": "fusion",
        "task": "nlvr" if nlvr else "vqa",
        "labels": labels,
        "num_images": config.get("num_images", 2) if nlvr else 1,
        "source": "huggingface-vilt",
    }


def _vilt_encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ViLT encoder's tensors under the fusion model's names (`vilt.`; a bare `ViltModel` saves them
    without the prefix); a pre-training head's own tensors (`mlm_score.`, `rank_output.`, ...) are dropped."""
    encoder = ("embeddings.", "encoder.", "layernorm.", "pooler.")
    out = {k: v for k, v in state.items() if k.startswith("vilt.")}
    out.update({f"vilt.{k}": v for k, v in state.items() if k.startswith(encoder)})
    return out


def read_train_vocab(folder: str | Path) -> frozenset[str] | None:
    """The words of `folder`'s `train_vocab.json` ({"words": [...], ...}, `workbench.coverage.vocabulary_record`),
    or None when there is no such file. Raises `CheckpointError` when the file is damaged."""
    path = Path(folder) / TRAIN_VOCAB
    if not path.is_file():
        return None
    words = _read_json(path).get("words")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise CheckpointError(f"{path}: the field 'words' is not a list of strings; the file is damaged")
    return frozenset(words)


def read_tokenizer(path: str | Path):
    """The tokenizer saved in a folder (any HF model folder), or None when it holds no tokenizer files."""
    path = Path(path)
    if not any((path / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        return None
    try:
        return _load_tokenizer(path)
    except Exception as e:  # noqa: BLE001 - tokenizer loading raises many types; report them as one
        raise CheckpointError(f"could not load the tokenizer in {path}: {e}") from e


def image_normalisation(folder: Path, mean: tuple, std: tuple) -> tuple[tuple, tuple]:
    """(image_mean, image_std) from a Hugging Face folder's `preprocessor_config.json`, else the defaults given."""
    spec_path = Path(folder) / "preprocessor_config.json"
    if not spec_path.is_file():
        return mean, std
    spec = json.loads(spec_path.read_text())
    return tuple(spec.get("image_mean", mean)), tuple(spec.get("image_std", std))
