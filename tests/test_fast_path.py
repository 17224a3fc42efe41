"""Where the fast path's switches come from (kdengine/fast_path.py): the flag, the environment, then, for CUDA runs
only, the defaults file that make gpu-verify --apply writes, then off."""
from __future__ import annotations

import json

import pytest

from kdengine import fast_path
from kdengine.errors import UsageError


@pytest.fixture
def defaults_file(tmp_path, monkeypatch):
    path = tmp_path / "fast_path.json"
    monkeypatch.setenv(fast_path.FILE_ENV, str(path))
    for env in fast_path.FLAGS.values():
        monkeypatch.delenv(env, raising=False)
    return path


def test_the_shipped_defaults_file_is_readable_and_both_switches_are_off(monkeypatch):
    monkeypatch.delenv(fast_path.FILE_ENV, raising=False)
    raw = fast_path.read_defaults()
    assert set(raw) == set(fast_path.FLAGS) and fast_path.defaults() == {"device_input": False, "cuda_graph": False}
    assert all("not yet" in raw[k]["why"] for k in fast_path.FLAGS)  # the verdict behind each default, in words


def test_flag_then_environment_then_defaults_file_and_the_file_speaks_for_cuda_alone(defaults_file, monkeypatch):
    assert fast_path.flag(None, "cuda_graph") is False  # no file: off
    fast_path.write_defaults({"cuda_graph": {"default": True, "why": "ON BY DEFAULT: measured"}}, defaults_file)
    assert fast_path.flag(None, "cuda_graph") is True and fast_path.flag(None, "device_input") is False
    assert fast_path.flag(None, "cuda_graph", cuda=False) is False  # a CPU run: a GPU's verdict never applies
    assert fast_path.flag(False, "cuda_graph") is False  # --no-cuda-graph wins over the file
    monkeypatch.setenv("KDSTUDY_CUDA_GRAPH", "0")
    assert fast_path.flag(None, "cuda_graph") is False  # the environment wins over the file
    monkeypatch.setenv("KDSTUDY_CUDA_GRAPH", "1")
    assert fast_path.flag(None, "cuda_graph", cuda=False) is True  # asked for by name: anywhere
    assert fast_path.flag(False, "cuda_graph") is False
    fast_path.write_defaults({"device_input": {"default": True}}, defaults_file)
    written = json.loads(defaults_file.read_text())
    assert written["cuda_graph"]["why"] == "ON BY DEFAULT: measured" and written["device_input"]["default"] is True


def test_the_planner_and_the_device_set_up_read_the_same_defaults(defaults_file):
    from kdengine.data.config import DataConfig
    from kdengine.execution import packing
    from kdengine.runspec import KDConfig, TrainConfig, build_specs
    from kdengine.training.device import setup_device

    spec = build_specs("baseline", "test_resnet", [], DataConfig(source="synthetic", image_size=32), TrainConfig(),
                       KDConfig(), 0)
    assert packing.memory_key(spec).endswith("|loader|eager|e256")
    fast_path.write_defaults({"device_input": {"default": True}, "cuda_graph": {"default": True}}, defaults_file)
    assert packing.memory_key(spec).endswith("|device|graph|e256")
    assert packing.memory_key(spec, fast={"cuda_graph": False}).endswith("|device|eager|e256")
    cpu = setup_device("cpu")
    assert not cpu.device_input and not cpu.cuda_graph  # the file speaks for GPUs alone


def test_a_damaged_defaults_file_is_one_clear_error(defaults_file):
    defaults_file.write_text("{not json")
    with pytest.raises(UsageError, match="fast-path defaults file"):
        fast_path.flag(None, "device_input")
    defaults_file.write_text('{"device_input": {"default": "yes"}}')
    with pytest.raises(UsageError, match="true/false 'default'"):
        fast_path.defaults()
    with pytest.raises(ValueError):
        fast_path.write_defaults({"cuda_graph": {"why": "no default"}}, defaults_file)


def test_the_cli_turns_a_switch_off_by_name(monkeypatch):
    """Once a switch can be on by default, --no-device-input must turn it off (the flag was store_true alone), over
    the environment too; a flag not given leaves it to the environment and the file."""
    from kdengine.cli import build_parser
    from kdengine.commands.common import fast_path as flags_of
    from kdengine.training.device import setup_device

    monkeypatch.setenv("KDSTUDY_DEVICE_INPUT", "1")
    parser = build_parser()
    given = flags_of(parser.parse_args(["train", "--strategy", "baseline", "--student", "test_resnet",
                                        "--no-device-input", "--cuda-graph"]))
    assert given == {"device_input": False, "cuda_graph": True}
    assert setup_device("cpu", **given).device_input is False
    silent = flags_of(parser.parse_args(["worker"]))
    assert silent == {"device_input": None, "cuda_graph": None} and setup_device("cpu", **silent).device_input
