"""The example format every dataset yields, whatever its task or source."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image


@dataclass
class Example:
    """One task example in the shared format (see `workbench.data.collate`)."""

    images: list[Image.Image]
    text: str
    label: int
    qtype: str
    meta: dict = field(default_factory=dict)
