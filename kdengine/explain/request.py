"""What ``kdengine explain`` is asked, as data (no torch): the method, the images, the class maps answer for,
and an optional shift; its slug names the files, its key identifies the answer in ``explain.json``."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import UsageError
from ..metric_names import SPLITS

# 2: the stage with enough cells, tie-aware IoU, chance level, ROAD and the sanity check; 3: ROAD removes 20% either
# way with its chance level (a random map's), the top-20% region weighs ties, the chance level over every pair
VERSION = 3
METHODS = ("gradcam", "gradcam++", "layercam")  # grad-cam's GradCAM, GradCAMPlusPlus, LayerCAM
TARGETS = ("true", "predicted")
MAX_IMAGES = 256
# Images explained by default: the attention interval is crossed over seeds and images, so its width depends on
# the images as much as on the seeds (8 gave 7 degrees of freedom for the images' share). 32 is affordable: at
# 224 px a ResNet-50's maps, ROAD (four 0.1 s imputations an image) and the sanity check take under a minute a
# model on a CPU.
DEFAULT_IMAGES = 32


@dataclass(frozen=True)
class Request:
    method: str = "gradcam"
    split: str = "test"
    images: int = DEFAULT_IMAGES
    seed: int = 0
    target: str = "true"
    shift: str | None = None  # "blur:3": the same images under an acquisition shift

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"--method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.split not in SPLITS:
            raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got '{self.split}'")
        if not 1 <= self.images <= MAX_IMAGES:
            raise UsageError(f"--images must lie in 1..{MAX_IMAGES}, got {self.images}")
        if self.target not in TARGETS:
            raise UsageError(f"--target must be one of {', '.join(TARGETS)}, got '{self.target}'")
        if self.shift is not None:
            self.shift_cell()

    def shift_cell(self) -> tuple[str, int] | None:
        """("blur", 3) for --shift blur:3 (one shift at one severity)."""
        if self.shift is None:
            return None
        from ..data.corruptions import parse_severities, parse_shifts  # cv2: only a request with a shift

        name, _, severity = self.shift.partition(":")
        if not severity:
            raise UsageError(f"--shift takes NAME:SEVERITY, e.g. blur:3, got '{self.shift}'")
        return parse_shifts(name)[0], parse_severities(severity)[0]

    @property
    def slug(self) -> str:
        """The request as a file stem: gradcam-test-n8-s0-true (and -blur3 under a shift)."""
        cell = self.shift_cell()
        return (f"{self.method.replace('+', 'p')}-{self.split}-n{self.images}-s{self.seed}-{self.target}"
                + (f"-{cell[0]}{cell[1]}" if cell else ""))

    def key(self) -> dict:
        return {"version": VERSION, **asdict(self)}
