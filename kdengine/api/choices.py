"""What the front ends offer and check, each declared once in the engine and read here: the flags' choices, the
launch form's lists, and the option sections every flag and form field is generated from (``options``).

Part of kdengine.api (no torch at import)."""
from __future__ import annotations

from typing import ClassVar

from ..data.config import source_help
from .. import method_catalog
from ..explain.request import DEFAULT_IMAGES, METHODS, TARGETS
from ..metric_names import SPLITS
from ..reports.correction import CORRECTIONS
from ..reports.stats import INTERVALS
from ..reports.table_model import METRICS, usual_metric
from ..reports.tables import FORMATS
from ..reports.thresholds import THRESHOLD_METRICS, THRESHOLD_RULES
from ..runspec import CONFIGS, MAX_SEED
from ..store.lifecycle import STATES, STATES_BY_PROGRESS
from ..store.runstore import DEVICES
from ..study.schema import PRESETS
from ..tracking.trackers import TRACKERS


class Choices:
    """The vocabulary of kdstudy's requests, as class attributes (a type, never instantiated)."""

    STATES: ClassVar[tuple[str, ...]] = STATES  # a run's states (``State``'s values), as --state takes them
    STATES_BY_PROGRESS: ClassVar[tuple] = STATES_BY_PROGRESS  # how a study's counts are listed
    DEVICES: ClassVar[tuple[str, ...]] = DEVICES  # what a run may ask for
    SPLITS: ClassVar[tuple[str, ...]] = SPLITS  # train, val, test
    METRICS: ClassVar[dict] = METRICS  # a table's metric -> (label, bounds, higher is better)
    usual_metric = staticmethod(usual_metric)  # the metric a kind of task is read by first (Results' default)
    FORMATS: ClassVar[tuple[str, ...]] = FORMATS  # what the tables are written as
    INTERVALS: ClassVar[tuple[str, ...]] = INTERVALS  # what a table's intervals cover
    CORRECTIONS: ClassVar[tuple[str, ...]] = CORRECTIONS  # how a table's marks are corrected
    THRESHOLDS: ClassVar[tuple[str, ...]] = THRESHOLD_RULES  # sensitivity's rules offered (--threshold takes any)
    THRESHOLD_METRICS: ClassVar[tuple[str, ...]] = THRESHOLD_METRICS  # the metrics read at a chosen threshold
    PRESETS: ClassVar[tuple[str, ...]] = PRESETS  # the studies shipped with kdstudy
    TRACKERS: ClassVar[tuple[str, ...]] = tuple(TRACKERS)  # the experiment trackers (their clients load when used)
    EXPLAIN_METHODS: ClassVar[tuple[str, ...]] = METHODS  # the class activation maps kdengine explain makes
    EXPLAIN_TARGETS: ClassVar[tuple[str, ...]] = TARGETS  # the class each map answers for
    EXPLAIN_IMAGES: ClassVar[int] = DEFAULT_IMAGES  # the images explained by default
    KD_METHODS: ClassVar[dict] = method_catalog.CATALOGUE  # the distillation methods, each declared once
    MAX_SEED: ClassVar[int] = MAX_SEED
    CONFIGS: ClassVar[dict] = CONFIGS  # "data", "train", "kd" -> the config class: every option, declared once

    @staticmethod
    def plugin_methods() -> tuple[str, ...]:
        """The methods installed packages offer (the kdstudy.methods entry points), by name."""
        return method_catalog.plugin_names()

    @staticmethod
    def source_help() -> str:
        """How a data source is written: every registered kind (``data/sources/``), then a bare path."""
        return source_help()
