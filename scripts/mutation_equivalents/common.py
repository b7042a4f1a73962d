"""Survivors of `make mutate` that no test can kill, with the reason: shared rules and single mutants.

scripts/mutate.py merges `RULES` and `EQUIVALENT` from every module of this folder; one file per group of core
modules keeps each list next to the code it explains.
"""

# Survivors that no test can kill, by rule on the function and the changed line (old -> new), and why. Each rule
# was checked against the mutants it matches: a rule that matched a killable mutant would hide it.
TWO_D = (  # functions whose tensors are always 2-D [batch, features] (or [batch, batch]): axis 1 is axis -1
    r"soft_label_kd|soft_label_kd_multilabel|vqa_bce|embedding_distill|modified_teacher_features"
    r"|fused_feature_targets|fusion_pair_mask|clip_contrastive|x_evaluate|compare_models"
)
RULES: list[tuple[str, str, str, str]] = [
    # (regex on the function, on the old line, on the new line, why the mutant is equivalent)
    (r".", r"\.to\(device\)", r"\.to\(None\)", "device placement: every test runs on the CPU, the only device here"),
    (r".", r"indent=2", r"indent=(None|3)|, \)\)", "JSON whitespace: every reader parses the same object"),
    (
        r"load_weights_into",
        r"strict=False",
        r"strict=None",
        "`strict=None` for `strict=False`: torch tests `if strict`",
    ),
    (
        r"save_checkpoint",
        r"mkdtemp\(dir=path.parent, prefix=",
        r"dir=None|prefix=None|mkdtemp\(prefix=|, \)\)",
        "where and under which name the temporary folder is made: it is renamed into place (here the system's "
        "temporary folder is on the same filesystem, so the rename works from there too) and nothing else reads it",
    ),
    (
        r".",
        r"device=",
        r"device=None|^(?!.*device=)",  # the argument set to None or dropped, nothing else on the line
        "device placement: every test runs on the CPU, the only device here",
    ),
    (r".", r'float\("-inf"\)', r'float\("-INF"\)', 'float("-INF") is float("-inf")'),
    (
        TWO_D,
        r"\(-1\)|\[-1\]|dim=-1",
        r"\(\+1\)|\[\+1\]|dim=\+1|, \)",
        "axis 1 for axis -1 (or the default axis, 1) on the 2-D tensors this function takes",
    ),
    (
        r"clip_contrastive|fusion_pair_mask",
        r"shape\[0\]",
        r"shape\[1\]",
        "the similarity matrix is square (a batch of aligned pairs): its two sizes are equal",
    ),
    (
        r"Trainerǁ(setup|checkpoint)",
        r"scaler",
        r".",
        "fp16's loss scaler exists only on a GPU (fp16 is refused on the CPU), and this machine has none",
    ),
    (
        r"fusion_pair_mask",
        r"topk\(k, dim=1\)",
        r"topk\(k, \)",
        "topk's default axis is the last: axis 1 of a 2-D matrix",
    ),
    (
        r"x__scores$",
        r"transpose\(-1, -2\)",
        r"transpose\(-1, \+2\)",
        "q and k are 4-D [batch, heads, tokens, width]: axis 2 is axis -2",
    ),
    (
        r"fusion_pair_mask",
        r"k >= b",
        r"k > b",
        "at k = b the top-k of every row and column is every pair: the same all-true mask",
    ),
    (
        r"token_feature_distill",
        r"\.to\(",
        r"\.to\(None\)",
        "`.to(None)` keeps the tensor as it is; the bool mask / float weights give the same values by type promotion",
    ),
]

# Survivors explained one by one: {mutant name: why it is equivalent}. Names are mutmut's for the code as it is
# now; a changed function renumbers its mutants, and `make mutate` then lists any survivor without a reason.
EQUIVALENT: dict[str, str] = {
    "workbench.train.state.x__jsonable__mutmut_1": "json writes a tuple as a list: converting it first changes nothing",
    "workbench.evaluate.x_evaluate__mutmut_1": "the default batch size decides how many examples one model call "
    "sees, not any result",
    "workbench.evaluate.x_compare_models__mutmut_1": "the default batch size decides how many examples one model "
    "call sees, not any row",
    "workbench.evaluate.x_export_rows__mutmut_19": "`newline=None` for `newline=''`: on Linux (line separator "
    "`\\n`) the csv module's `\\r\\n` line ends are written unchanged either way",
    "workbench.evaluate.x_export_rows__mutmut_21": "the same, with `newline` left out (its default is None)",
    "workbench.train.trainer.xǁTrainerǁsetup__mutmut_88": "`keep_fp32_wrapper=None` for `False`: accelerate tests "
    "`if not keep_fp32_wrapper`, so None removes the autocast wrapper as False does",
    "workbench.train.trainer.xǁTrainerǁfit__mutmut_51": "`return` for `break` as the loop's last statement: nothing "
    "follows the loop in `fit`",
    "workbench.train.state.x_load_state__mutmut_21": "`break` for `continue` on the `rng.` key: safetensors returns "
    "the keys sorted and `rng.torch` sorts after every `<index>.<name>` key, so nothing is left to skip",
}
