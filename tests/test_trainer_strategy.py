"""Which strategy `auto` picks and which worker writes, from `TF_CONFIG`."""
import json

import pytest

from trainer import strategy


def _tf_config(monkeypatch, cluster):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 0}}))


def test_auto_is_multi_worker_where_tf_config_names_several_tasks(monkeypatch):
    _tf_config(monkeypatch, {"chief": ["h0:2222"], "worker": ["h1:2222", "h2:2222"]})
    assert strategy.cluster_tasks() == 3
    assert strategy.resolve("auto") == "multi_worker"


def test_auto_on_one_cpu_machine(monkeypatch):
    _tf_config(monkeypatch, {"chief": ["h0:2222"]})  # Vertex AI, one replica
    assert strategy.resolve("auto") == "default"
    monkeypatch.delenv("TF_CONFIG")
    assert strategy.resolve("auto") == "default"
    assert strategy.resolve("mirrored") == "mirrored"
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy.resolve("parameter_server")


@pytest.mark.parametrize("task_type, task_id, cluster, chief", [
    (None, 0, {}, True),
    ("chief", 0, {"chief": ["a"], "worker": ["b"]}, True),
    ("worker", 0, {"chief": ["a"], "worker": ["b"]}, False),
    ("worker", 0, {"worker": ["a", "b"]}, True),
    ("worker", 1, {"worker": ["a", "b"]}, False),
])
def test_chief_task(task_type, task_id, cluster, chief):
    assert strategy.chief_task(task_type, task_id, cluster) is chief
