"""`agentlightning.execution`'s strategies, which here are the Trainer's (`lightning_queue.trainer.strategy`).

v0.3 scripts import `SharedMemoryExecutionStrategy` / `ClientServerExecutionStrategy` from this path to
pass as `Trainer(strategy=...)`; the classes live with the Trainer, which is what reads them.
"""

from lightning_queue.trainer.strategy import (
    ClientServerExecutionStrategy,
    ExecutionStrategy,
    SharedMemoryExecutionStrategy,
)

__all__ = ["ClientServerExecutionStrategy", "ExecutionStrategy", "SharedMemoryExecutionStrategy"]
