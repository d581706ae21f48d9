import numpy as np
import pytest
import ray

from xsharp.parallel.collective import CollectiveError, CollectiveMember, Mailbox, RayCollective


@ray.remote
class Peer(CollectiveMember):
    def join(self, rank, peers, transport):
        self.coll = RayCollective(rank, peers, self._mailbox(), timeout=60, transport=transport)

    def transport(self):
        return self.coll.transport

    def shm_files(self):
        import glob

        return glob.glob("/dev/shm/xsharp-coll-*")

    def allreduce(self, buf):
        out = buf.copy()
        self.coll.allreduce(out)
        return out

    def broadcast(self, buf, root):
        out = buf.copy()
        self.coll.broadcast(out, root)
        return out


@pytest.fixture(scope="module", params=["ring", "shm"])
def peers(ray_address, request):
    actors = [Peer.options(num_cpus=0, max_concurrency=4).remote() for _ in range(3)]
    ray.get([a.join.remote(i, actors, request.param) for i, a in enumerate(actors)])
    yield actors
    assert ray.get([a.transport.remote() for a in actors]) == [request.param] * 3
    for a in actors:
        ray.kill(a)


@pytest.mark.parametrize("size", [1, 2, 1001, 300_000])  # fewer elements than workers, uneven chunks, object-store sized
def test_ring_allreduce_sums_and_agrees_bitwise(peers, size):
    rng = np.random.default_rng(size)
    bufs = [rng.standard_normal(size).astype(np.float32) for _ in peers]
    outs = ray.get([p.allreduce.remote(b) for p, b in zip(peers, bufs)])
    np.testing.assert_allclose(outs[0], np.sum(bufs, axis=0), rtol=1e-5, atol=1e-5)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_repeated_allreduces_do_not_mix_messages(peers):
    results = []
    for step in range(5):
        bufs = [np.full(10, rank + 10 * step, np.float32) for rank in range(3)]
        results.append(ray.get([p.allreduce.remote(b) for p, b in zip(peers, bufs)]))
    for step, outs in enumerate(results):
        for out in outs:
            np.testing.assert_array_equal(out, np.full(10, 3 + 30 * step, np.float32))


def test_buffer_sizes_and_operations_interleave(peers):
    # A new size maps new segments mid-run; broadcasts and allreduces share the double buffers.
    for step, size in enumerate([5, 7, 5, 300_000, 7]):
        bufs = [np.full(size, rank + step, np.float32) for rank in range(3)]
        outs = ray.get([p.allreduce.remote(b) for p, b in zip(peers, bufs)])
        for out in outs:
            np.testing.assert_array_equal(out, np.full(size, 3 + 3 * step, np.float32))
        outs = ray.get([p.broadcast.remote(b, step % 3) for p, b in zip(peers, bufs)])
        for out in outs:
            np.testing.assert_array_equal(out, bufs[step % 3])


def test_shared_memory_files_are_unlinked_once_mapped(peers):
    ray.get([p.allreduce.remote(np.ones(64, np.float32)) for p in peers])
    assert ray.get(peers[0].shm_files.remote()) == []


def test_broadcast_copies_the_root_buffer(peers):
    bufs = [np.full(7, rank, np.float32) for rank in range(3)]
    outs = ray.get([p.broadcast.remote(b, 1) for p, b in zip(peers, bufs)])
    for out in outs:
        np.testing.assert_array_equal(out, np.full(7, 1, np.float32))


def test_a_missing_peer_times_out_with_a_clear_error():
    box = Mailbox()
    box.put(("a",), 1)
    assert box.take(("a",), timeout=1) == 1
    with pytest.raises(CollectiveError, match="within"):
        box.take(("b",), timeout=0.05)
