"""fit's overhead against a hand-written PyTorch loop on the digits MLP (mini-batch 32), per epoch.

Both loops see the same data order, model, optimizer and batch size and evaluate the training loss at each
epoch end; runs of ``--epochs`` epochs alternate within one process (``--repeats`` times) so machine noise
hits both alike. Prints the median time per epoch of each and the overhead.

    .venv/bin/python benchmarks/fit_overhead.py [--epochs 5] [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import descentlab
from descentlab import datasets, models
from descentlab.data import MiniBatches


def hand_loop(model, opt, batches, epochs):
    for epoch in range(epochs):
        hand_epoch(model, opt, batches, epoch)


def hand_epoch(model, opt, batches, epoch):
    model.train()
    for x, y in batches.batches(epoch):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    with torch.no_grad():  # fit evaluates the training loss at each epoch end: so does the baseline
        model.eval()
        torch.nn.functional.cross_entropy(model(batches._tensors[0]), batches._tensors[1]).item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    d = datasets.load("digits")
    m_fit, m_hand = models.build("mlp", 64, 10, seed=0), models.build("mlp", 64, 10, seed=0)
    o_fit = descentlab.Adam(m_fit.parameters(), lr=1e-3)
    o_hand = descentlab.Adam(m_hand.parameters(), lr=1e-3)
    batches = MiniBatches(d.train, 32, seed=0)
    fit_times, hand_times = [], []
    for repeat in range(args.repeats + 1):
        start = time.perf_counter()
        descentlab.fit(m_fit, d.train, o_fit, loss="cross_entropy", epochs=args.epochs, batch_size=32, seed=0,
                       progress=False)
        fit_times.append((time.perf_counter() - start) / args.epochs)
        start = time.perf_counter()
        hand_loop(m_hand, o_hand, batches, args.epochs)
        hand_times.append((time.perf_counter() - start) / args.epochs)
    f, h = statistics.median(fit_times[1:]), statistics.median(hand_times[1:])  # the first pair warms up
    print(f"digits MLP, batch 32, {len(batches)} steps/epoch; median over {args.repeats} runs of {args.epochs} epochs")
    print(f"fit:       {f * 1000:7.2f} ms/epoch")
    print(f"hand loop: {h * 1000:7.2f} ms/epoch")
    print(f"overhead:  {100 * (f / h - 1):+6.1f} %  (target <= 5 %)")


if __name__ == "__main__":
    main()
