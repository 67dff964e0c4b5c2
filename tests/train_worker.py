"""A training process for the kill-and-resume test: ``python train_worker.py CKPT_DIR OUT_FILE [SLEEP]``.

After every optimizer step it prints the global step number on its own line (flushed), so that the test can
kill it after a chosen number of steps whatever the speed of the machine, then sleeps SLEEP seconds."""

import sys
import time

import torch

import descentlab
from descentlab import datasets, models

ckpt, out = sys.argv[1], sys.argv[2]
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
torch.set_num_threads(1)


def report_step(step):
    print(step, flush=True)
    if pause:
        time.sleep(pause)


data = datasets.load("digits", seed=0)
model = models.build("mlp", 64, 10, seed=0, hidden=(32,))
opt = descentlab.Adam(model.parameters(), lr=3e-3)
descentlab.fit(model, data.train, opt, loss="cross_entropy", epochs=3, batch_size=16, seed=7,
               schedule=descentlab.schedules.exponential(3e-3, 0.9), schedule_unit="step",
               checkpoint_dir=ckpt, checkpoint_every=7, keep_last=2, progress=False,
               step_callback=report_step)
torch.save(model.state_dict(), out)
