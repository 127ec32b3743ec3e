import pytest
import torch

from sparsebench import registry
from sparsebench.comm.compressors import Identity, TopK, sparse_payload
from sparsebench.comm.feedback import ErrorFeedback
from sparsebench.comm.links import Link, comm_time


def test_topk_keeps_exactly_k_largest():
    x = torch.tensor([0.1, -5.0, 0.2, 3.0, -0.05, 1.0])
    payload = TopK(0.5).compress(x)
    assert payload.tensors["values"].numel() == 3
    assert TopK(0.5).decompress(payload).tolist() == [0.0, -5.0, 0.0, 3.0, 0.0, 1.0]


@pytest.mark.parametrize("codec", [Identity(), TopK(0.01), TopK(0.3)])
def test_payload_bytes_equal_the_serialized_size(codec):
    x = torch.randn(10_000)
    payload = codec.compress(x)
    assert payload.nbytes == len(payload.to_bytes())


def test_topk_bytes_are_values_plus_int32_indices():
    payload = TopK(0.01).compress(torch.randn(10_000))
    assert payload.nbytes == 100 * 4 + 100 * 4


def test_error_feedback_memory_plus_sent_equals_input_plus_old_memory():
    ef = ErrorFeedback(TopK(0.1))
    g = torch.Generator().manual_seed(0)
    memory = torch.zeros(500)
    for _ in range(5):
        x = torch.randn(500, generator=g)
        sent = TopK(0.1).decompress(ef.compress(x))
        assert torch.allclose(sent + ef.memory, x + memory, atol=1e-6)
        memory = ef.memory.clone()


def test_sparse_payload_falls_back_to_dense_when_smaller():
    assert "indices" not in sparse_payload(torch.randn(100)).tensors
    sparse = torch.zeros(100)
    sparse[3] = 1.0
    assert sparse_payload(sparse).nbytes == 8


def test_link_time_is_latency_plus_bytes_over_bandwidth():
    link = Link("x", bandwidth_gbps=1.0, latency_ms=10.0)
    assert comm_time([(125_000_000, 2)], [link]) == {"x": pytest.approx(1.02)}


def test_no_compression_averages_and_counts_fp32_both_ways():
    method = registry.get("compression", "none").obj(
        registry.make_params("compression", "none", {"workers": 3}), 0
    )
    grads = [torch.full((10,), float(i)) for i in range(3)]
    out = method.exchange(grads)
    assert torch.allclose(out.update, torch.ones(10))
    assert out.bytes_up == [40, 40, 40] and out.bytes_down == [40, 40, 40]


def test_topk_ef_sends_k_values_per_worker_and_carries_the_rest():
    params = registry.make_params("compression", "topk-ef", {"workers": 2, "density": 0.1})
    method = registry.get("compression", "topk-ef").obj(params, 0)
    grads = [torch.randn(1000), torch.randn(1000)]
    out = method.exchange(grads)
    assert out.bytes_up == [100 * 8, 100 * 8]
    for worker, g in zip(method.workers, grads, strict=True):
        assert int((worker.memory != 0).sum()) == 900
        assert torch.allclose(worker.memory + TopK(0.1).decompress(TopK(0.1).compress(g)), g)


def test_one_participant_is_charged_its_own_bytes_with_or_without_server_contention():
    link = Link("x", bandwidth_gbps=1.0, latency_ms=10.0)
    solo = [(1_000_000, 1, 1_000_000)]
    expected = 0.010 + 8 * 1_000_000 / 1e9
    for server in (1, 4, None):
        assert comm_time(solo, [link], server) == {"x": pytest.approx(expected)}


def test_the_servers_link_carries_all_workers_uploads_and_downloads_in_turn():
    link = Link("x", bandwidth_gbps=1.0, latency_ms=10.0)
    # 4 workers, each 1 MB up and 1 MB down: 2 MB on a worker's link, 8 MB through the server
    step = [(2_000_000, 1, 8_000_000)]
    assert comm_time(step, [link], 1) == {"x": pytest.approx(0.010 + 8 * 8e6 / 1e9)}
    assert comm_time(step, [link], 2) == {"x": pytest.approx(0.010 + 8 * 4e6 / 1e9)}
    assert comm_time(step, [link], 4) == {"x": pytest.approx(0.010 + 8 * 2e6 / 1e9)}
    assert comm_time(step, [link], None) == {"x": pytest.approx(0.010 + 8 * 2e6 / 1e9)}
    assert comm_time([(2_000_000, 2, 8_000_000)], [link], 1)["x"] == pytest.approx(
        0.020 + 8 * 8e6 / 1e9
    )  # two sequential exchanges pay the latency twice


def test_a_profile_has_one_server_link_unless_it_says_otherwise():
    from sparsebench.comm.links import server_links

    assert server_links({"links": {}}) == 1
    assert server_links({"server_links": 8}) == 8
    assert server_links({"server_links": None}) is None
