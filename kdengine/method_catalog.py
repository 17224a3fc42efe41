"""The distillation methods, as data: how a student learns from its teacher (no torch).

The *strategy* says who teaches (``strategy_catalog``: a larger teacher, a smaller one, a defective one, the
student's own copy, a virtual teacher, several); the *method* says how the student learns from it: Hinton's
softened KL on the logits, DKD, DIST, FitNet hints, attention transfer, RKD, PKT, CRD. They are two axes of a
study: any strategy with a teacher network pairs with any method that fits it.

Each method is declared here once, with what it needs from the teacher (``logits``, ``features``: feature maps at
stages, ``embedding``: the pooled penultimate vector), the tasks it is defined for, the options it reads (the
``[kd]`` keys of its hyperparameters: a run's identity holds only these), and whether its step can be captured as a
CUDA graph. Its loss is registered where it is defined (``training/methods/<name>.py``, ``@register_method``);
a test proves that every method declared here has one, and the reverse. Methods from outside kdstudy (the
``kdstudy.methods`` entry-point group, or ``--method-file``) declare themselves when they are loaded
(``training/methods/plugins.py``); their names are known here from the entry points' metadata, without importing
them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points

from .errors import UsageError

LOGITS, FEATURES, EMBEDDING = "logits", "features", "embedding"
NEEDS = (LOGITS, FEATURES, EMBEDDING)
MULTICLASS, BINARY, MULTILABEL = "multiclass", "binary", "multilabel"
TASK_KINDS = (MULTICLASS, BINARY, MULTILABEL)
ENTRY_POINT_GROUP = "kdstudy.methods"
DEFAULT = "hinton"


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    paper: str
    needs: str  # LOGITS, FEATURES or EMBEDDING: what it reads from the teacher (and the student)
    description: str
    options: tuple[str, ...] = ()  # the [kd] keys it reads (its hyperparameters), besides the modifier's
    tasks: tuple[str, ...] = TASK_KINDS  # the task kinds its loss is defined for
    graph_safe: bool = True  # its step may be captured as a CUDA graph (no host-side randomness)
    standardizable: bool = False  # logit standardisation (kd.logit_standardize) applies to it
    defaults: str = ""  # the paper's defaults in words (README's table, `kdengine study schema`)

    @property
    def needs_network(self) -> bool:
        """Feature and embedding methods read a teacher network's insides: a virtual teacher has none."""
        return self.needs != LOGITS


LOGIT_OPTIONS = ("temperature",)
STANDARDIZE_OPTIONS = ("logit_standardize", "ls_temperature", "ls_weight")
TEMPERATURE_OPTIONS = ("temperature", "ls_temperature")  # the keys that set a logit method's softening temperature

CATALOGUE: dict[str, Method] = {m.name: m for m in (
    Method("hinton", "Hinton KD", "Hinton, Vinyals & Dean 2015", LOGITS,
           "softened KL between the teacher's and the student's logits",
           ("alpha", "temperature", "reduction"), standardizable=True,
           defaults="α 0.9 (on the KD term), T 4, batchmean"),
    Method("dkd", "DKD", "Zhao et al., CVPR 2022", LOGITS,
           "decoupled KD: target-class (TCKD) and non-target-class (NCKD) terms weighted apart",
           ("temperature", "dkd_alpha", "dkd_beta", "dkd_warmup"), tasks=(MULTICLASS, BINARY), standardizable=True,
           defaults="α 1, β 8, T 4, 20 warm-up epochs (CIFAR-100)"),
    Method("dist", "DIST", "Huang et al., NeurIPS 2022", LOGITS,
           "Pearson correlation between the softened outputs, across classes (inter) and across the batch (intra)",
           ("temperature", "dist_beta", "dist_gamma"), tasks=(MULTICLASS, BINARY), standardizable=True,
           defaults="β 2, γ 2, T 4 (CIFAR-100)"),
    Method("fitnet", "FitNet", "Romero et al., ICLR 2015", FEATURES,
           "hints: a learned 1x1 regressor maps a student stage onto the teacher's, MSE between them",
           ("fitnet_stage", "fitnet_weight"), defaults="the middle stage, weight 100 (one stage, as mdistiller)"),
    Method("at", "AT", "Zagoruyko & Komodakis, ICLR 2017", FEATURES,
           "attention transfer: the normalised spatial attention maps of several stages",
           ("at_beta", "at_p", "at_stages"), defaults="β 1000 (β/2 on the sum), p 2, every stage after the stem"),
    Method("rkd", "RKD", "Park et al., CVPR 2019", EMBEDDING,
           "relational KD: distances and angles within the batch on the penultimate embedding",
           ("rkd_distance", "rkd_angle"), defaults="distance 25, angle 50"),
    Method("pkt", "PKT", "Passalis & Tefas, ECCV 2018", EMBEDDING,
           "probabilistic knowledge transfer: cosine-kernel conditional probabilities on the embedding",
           ("pkt_weight",), defaults="weight 30000 (mdistiller)"),
    Method("crd", "CRD", "Tian et al., ICLR 2020", EMBEDDING,
           "contrastive representation distillation: NCE against a memory bank of negatives over the train set",
           ("crd_weight", "crd_dim", "crd_negatives", "crd_temperature", "crd_momentum"), graph_safe=False,
           defaults="weight 0.8, 128-d, 16384 negatives, τ 0.07, momentum 0.5"),
)}


@lru_cache(maxsize=1)
def plugin_names() -> tuple[str, ...]:
    """The methods other packages offer through the ``kdstudy.methods`` entry points (names only: nothing is
    imported; read once per process, as the installed packages do not change under it)."""
    return tuple(sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in CATALOGUE))


def names() -> tuple[str, ...]:
    return tuple(CATALOGUE) + plugin_names()


def get(name: str) -> Method | None:
    """The declaration of a built-in method (None for a plugin's: it declares itself when loaded)."""
    return CATALOGUE.get(name)


def check_name(name: str, method_file: str | None = None) -> None:
    """One line when ``name`` is no method kdstudy knows (a method file's own names are checked when it loads)."""
    if method_file or name in CATALOGUE or name in plugin_names():
        return
    raise UsageError(f"unknown method '{name}' (choose {', '.join(names())}, or load your own with --method-file)",
                     field="method")


def check_fits(method: str, strategy: str, teacher_source: str) -> None:
    """One line when a method cannot work with a strategy's teacher: a feature or embedding method needs a teacher
    network, which a virtual teacher (tf-reg) is not."""
    m = get(method)
    if m is not None and m.needs_network and teacher_source == "virtual":
        logit = ", ".join(n for n, x in CATALOGUE.items() if not x.needs_network)
        raise UsageError(f"method {method} reads the teacher's {m.needs}; strategy {strategy}'s virtual teacher has "
                         f"none (use a logit method: {logit})", field="method")


def reads(method: str, key: str, standardize: bool = False, own_temperature: bool = False) -> bool | None:
    """Whether runs of ``method`` read the ``[kd]`` option ``key``: True/False for a method's own options and the
    logit-standardisation modifier's, None for an option no method declares (the strategy decides it).

    With logit standardisation on, the modifier's base temperature replaces the method's temperature; a strategy
    whose teacher brings its own temperature (``own_temperature``: tf-reg's virtual teacher) replaces both. A plugin
    method reads ``method_args`` and the temperature."""
    m = get(method)
    owned = {o for x in CATALOGUE.values() for o in x.options} | set(STANDARDIZE_OPTIONS) | {"method_args"}
    if key not in owned:
        return None
    if own_temperature and key in TEMPERATURE_OPTIONS:
        return False
    if m is None:  # a plugin method: its own settings and the shared temperature
        return key in ("method_args", "temperature")
    if key == "logit_standardize":
        return m.standardizable
    if key in STANDARDIZE_OPTIONS:
        return m.standardizable and standardize
    if key == "temperature" and m.standardizable and standardize:
        return False
    return key in m.options
