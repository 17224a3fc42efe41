"""The Ray executor on a simulated two-node cluster (ray.cluster_utils.Cluster, CPUs only): a study runs across
both nodes with the local executor's results, and a node killed mid-run loses nothing."""
from __future__ import annotations

import os
import threading
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import pytest  # noqa: E402

from kdengine.cli import main  # noqa: E402
from kdengine.store import RunStore  # noqa: E402
from tests.conftest import SMALL_SYNTH  # noqa: E402

# the demo cut to its normal-KD pair (a teacher, a baseline, a student): the teacher and the baseline train at once,
# one on each node, then the student; every strategy's code path is the same on Ray
STUDY = ["study", "run", "demo", "--set", f"data.source={SMALL_SYNTH}", "--set", "data.image_size=32",
         "--set", "train.epochs=2", "--set", "seeds=[0]", "--set", "shift.shifts=blur", "--set", "shift.severities=\"1\"",
         "--set", "shift.external=none", "--set", 'experiments=[{strategy="normal",teachers=["resnet10t"],'
         'students=["test_resnet"]}]', "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    yield c, nodes
    ray.shutdown()
    c.shutdown()


def results(store: RunStore) -> dict:
    return {rid: (m["test"]["loss"], m["test"]["confusion"], m["val"]["accuracy"])
            for rid in store.list_ids() if (m := store.read_metrics(rid))}


def nodes_used(store: RunStore) -> set[str]:
    return {e["worker"].split(":")[2] for rid in store.list_ids() for e in store.read_events(rid)[0]
            if e.get("state") == "running" and str(e.get("worker", "")).startswith("ray:")}


def mid_training_on(store: RunStore, node_id: str) -> str | None:
    """A run being trained on ``node_id`` that has logged a training step."""
    for rid in store.list_ids():
        status = store.read_status(rid)
        if status.state == "running" and node_id[:12] in str(status.worker) and \
                any(e["type"] == "step" for e in store.read_events(rid)[0]):
            return rid
    return None


def test_a_study_on_ray_across_two_nodes_survives_a_dead_node(cluster, tmp_path, capsys):
    """The study runs on both nodes; one node is killed (SIGKILL of its raylet) in the middle of a run; Ray
    retries the task on the other node, which takes the run over at once and resumes it; every run ends
    with exactly the numbers of the local executor."""
    import torch

    c, nodes = cluster
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per task: two nodes share this machine's cores
    try:
        assert main([*STUDY, "--runs-dir", str(tmp_path / "local")]) == 0
        local = RunStore(tmp_path / "local")
        store = RunStore(tmp_path / "ray")
        outcome = {}
        driver = threading.Thread(target=lambda: outcome.setdefault(
            "code", main([*STUDY, "--runs-dir", str(store.root), "--executor", f"ray={c.address}"])))
        driver.start()
        victim, deadline = None, time.time() + 300
        while victim is None and time.time() < deadline and driver.is_alive():
            victim = mid_training_on(store, nodes[1].node_id)
            time.sleep(0.05)
        assert victim, "no run was caught mid-training on the second node"
        c.remove_node(nodes[1], allow_graceful=False)  # a dead node
        driver.join(timeout=600)
    finally:
        torch.set_num_threads(threads)
    assert outcome.get("code") == 0, capsys.readouterr()
    assert "3/3 runs finished" in capsys.readouterr().out
    assert results(store) == results(local)  # the same runs, the same numbers, bit for bit
    assert len(nodes_used(store)) == 2  # both nodes trained
    running = [e for e in store.read_events(victim)[0] if e.get("state") == "running"]
    assert len(running) == 2  # the dead node's attempt, then the take-over on the live node
    assert running[1]["worker"].split(":")[2] == nodes[0].node_id[:12]
    assert not list(store.root.rglob("*.tmp"))
