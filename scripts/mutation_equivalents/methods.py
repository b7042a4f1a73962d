"""Equivalent mutants of the methods modules (see common.py for the format)."""

RULES: list[tuple[str, str, str, str]] = []

_SEQUENCE_END = (
    "the fusion student's sequence is the text, the image [CLS] and the p patches of its one image (MAD refuses "
    "two images and passes no pixel mask): nothing follows the patches, so a slice ending at t + 2 + p stops at "
    "the sequence's end, t + 1 + p, as the original does"
)

EQUIVALENT: dict[str, str] = {
    "workbench.methods.mad.xǁMADObjectiveǁloss__mutmut_128": "`.to(None)` for `.to(ce.device)` on the confidence "
    "weights: `token_feature_distill` moves the weights to its features' device and type itself "
    "(`weights.to(per_instance)`), and the features come from the same student as `ce`",
    "workbench.methods.mad.xǁMADObjectiveǁloss__mutmut_168": "the text-to-image attention's key slice: "
    + _SEQUENCE_END,
    "workbench.methods.mad.xǁMADObjectiveǁloss__mutmut_194": "the projected image tokens' slice: " + _SEQUENCE_END,
    "workbench.methods.dual_student.xǁTeacherObjectiveǁlabel_terms__mutmut_14": "`None` for `0.0` as the default "
    "soft weight: it is only read by `if soft_w:` (both falsy), and the soft term is skipped either way",
}
