"""Mini-batch iteration: modes, seeded reshuffling, the last-partial-batch policy, datasets."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from descentlab.data import MiniBatches, check_batch_size, epoch_order


def test_full_one_and_mini_batches_cover_every_sample_once_per_epoch():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    for size, expected in (("full", [10]), (1, [1] * 10), (4, [4, 4, 2])):
        batches = MiniBatches((x, y), size, seed=3)
        got = list(batches.batches(epoch=2))
        assert [len(b[0]) for b in got] == expected and len(batches) == len(expected)
        seen = torch.cat([b[1] for b in got])
        assert sorted(seen.tolist()) == list(range(10))
        assert all(torch.equal(bx[:, 0].long(), by) for bx, by in got)  # x and y stay paired


def test_drop_last_and_reshuffling_per_epoch_from_seed():
    x = torch.arange(10)
    assert [len(b[0]) for b in MiniBatches(x, 4, drop_last=True).batches(0)] == [4, 4]
    a, b = MiniBatches(x, 10, seed=1), MiniBatches(x, 10, seed=1)
    e0, e1 = next(a.batches(0))[0], next(a.batches(1))[0]
    assert not torch.equal(e0, e1)                         # reshuffled each epoch
    assert torch.equal(e1, next(b.batches(1))[0])          # … from the seed, reproducibly
    assert torch.equal(epoch_order(10, 1, 1), epoch_order(10, 1, 1))
    assert not torch.equal(next(MiniBatches(x, 10, seed=2).batches(1))[0], e1)


def test_start_skips_the_batches_already_done():
    batches = MiniBatches(torch.arange(20), 3, seed=0)
    all_batches = list(batches.batches(4))
    rest = list(batches.batches(4, start=5))
    assert [t[0].tolist() for t in rest] == [t[0].tolist() for t in all_batches[5:]]


def test_torch_dataset_is_accepted():
    ds = TensorDataset(torch.arange(7.0), torch.arange(7))
    got = list(MiniBatches(ds, 3, shuffle=False).batches(0))
    assert [b[1].tolist() for b in got] == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("bad", [0, -1, 2.5, "half", True, None])
def test_bad_batch_sizes(bad):
    with pytest.raises(ValueError, match="batch_size must be 'full', 'auto' or a positive integer"):
        check_batch_size(bad)


def test_batch_larger_than_dataset_and_bad_data():
    with pytest.raises(ValueError, match="larger than the dataset"):
        MiniBatches(torch.arange(5), 6)
    with pytest.raises(ValueError, match="share the first dimension"):
        MiniBatches((torch.arange(5), torch.arange(4)), 2)
    with pytest.raises(ValueError, match="empty"):
        MiniBatches(torch.zeros(0), "full")
    with pytest.raises(ValueError, match="must be a tensor"):
        MiniBatches([1, 2, 3], 1)
