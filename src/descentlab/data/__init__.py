"""Mini-batch iteration and batch-size advice."""

from descentlab.data.batch_size import BatchSizeAdvice, suggest_batch_size
from descentlab.data.batches import MiniBatches, check_batch_size, epoch_order

__all__ = ["BatchSizeAdvice", "MiniBatches", "check_batch_size", "epoch_order", "suggest_batch_size"]
