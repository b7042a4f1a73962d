"""Equivalent mutants of the explain modules (see common.py for the format)."""

RULES: list[tuple[str, str, str, str]] = [
    # (regex on the function, on the old line, on the new line, why the mutant is equivalent)
    (
        r"^x_cross_(attention|probs)$",
        r"transpose\(-1, -2\)",
        r"transpose\(-1, \+2\)",
        "the tensors transposed are 4-D ([layers or batch, heads, tokens, tokens or width]): axis 2 is axis -2",
    ),
    (
        r"^x_(rollout|rollout_rows)$",
        r"shape\[-1\]",
        r"shape\[-2\]",
        "an attention map is square (one row per query, one column per key of the same sequence): its last two "
        "sizes are equal",
    ),
    (r".", r'float\("nan"\)', r'float\("NAN"\)', 'float("NAN") is float("nan")'),
    (
        r"^x_(attention_rollout|relevancy)$",
        r"\.astype\(np\.float64\)",
        r"\.astype\(None\)",
        "numpy reads `astype(None)` as `astype(float64)`, its default float type",
    ),
    (
        r"^x_(rollout_rows|relevancy_rows)$",
        r"\.to\([^()]*\.device\)",
        r"\.to\(None\)",
        "device placement: every test runs on the CPU, the only device here",
    ),
    (
        r"^x_(_targets|relevancy_rows)$",
        r"(argmax|softmax)\(-1\)",
        r"(argmax|softmax)\(\+1\)",
        "the logits are 2-D [batch, labels]: axis 1 is axis -1",
    ),
]

EQUIVALENT: dict[str, str] = {
    "workbench.explain.relevancy_maps.x_relevancy_matrix__mutmut_23": "`shape[-2]` for `shape[-1]`: `a_bar` is a "
    "self-attention map over one sequence, [..., N, N], so its last two sizes are equal",
    "workbench.explain.attention.x_cross_probs__mutmut_27": "the teacher's q / k of layers `l - n` for `l`: "
    "`capture_qk` stores layer x under x % n, so both store (and `cross_probs` reads) layer l",
    "workbench.explain.relevancy_maps.x_relevancy_rows__mutmut_58": "`n = None` for the teacher: `flat` holds its "
    "joint attentions only, so `grads[:None]` is `grads[:n]`",
}
