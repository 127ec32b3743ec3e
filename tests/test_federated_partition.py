import json

import pytest
import torch

from sparsebench import registry
from sparsebench.data.partition import manifest_hash, read_manifest, shards, write_manifest
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.engines.federated.clients import write_partition_manifest
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec


def test_shards_cover_every_sample_once_with_k_classes_each_and_are_reproducible():
    y = torch.arange(1000) % 10
    parts = shards(y, 20, classes_per_client=2, seed=4)
    assert sorted(torch.cat(parts).tolist()) == list(range(1000))
    assert all(len(torch.unique(y[p])) == 2 for p in parts)
    assert manifest_hash(parts) == manifest_hash(shards(y, 20, 2, seed=4))
    assert manifest_hash(parts) != manifest_hash(shards(y, 20, 2, seed=5))


def test_shards_refuse_fewer_clients_than_classes():
    with pytest.raises(ValueError, match="clients >= classes"):
        shards(torch.arange(100) % 10, 5, 2, seed=0)


def test_manifest_round_trips_and_detects_tampering(tmp_path):
    parts = shards(torch.arange(200) % 4, 6, 2, seed=1)
    path = tmp_path / "partition.json"
    digest = write_manifest(parts, path, {"name": "shards", "classes_per_client": 2}, seed=1)
    assert digest == manifest_hash(parts)
    assert [p.tolist() for p in read_manifest(path)] == [p.tolist() for p in parts]
    document = json.loads(path.read_text())
    document["clients"]["0"][0], document["clients"]["1"][0] = (
        document["clients"]["1"][0],
        document["clients"]["0"][0],
    )
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="sha256"):
        read_manifest(path)


def test_run_records_the_sha256_of_the_manifest_written_for_its_spec(tiny_data, tmp_path):
    opts = {"clients": 4, "clients_per_round": 2, "partition": "shards", "classes_per_client": 2}
    method_c, data_c, model_c = Component("fedavg", opts), Component("tiny"), Component("mlp")
    spec = RunSpec("federated", method_c, data_c, model_c, seed=3)
    digest = write_partition_manifest(spec, tiny_data, tmp_path / "partition.json")
    method = registry.get("federated", "fedavg").obj(
        registry.make_params("federated", "fedavg", opts), 0
    )
    budget = Budget(rounds=1, local_steps=1, batch_size=8, optimizer="sgd", lr=0.1)
    ctx = RunContext(spec, tiny_data, MLP(8, 16, 1, 4), method, budget, all_seeds(3))
    assert run(ctx).costs["partition"]["sha256"] == digest
    assert len(read_manifest(tmp_path / "partition.json")) == 4
