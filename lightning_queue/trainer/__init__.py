"""`Trainer` and what it is configured with: component specs and Agent-Lightning's execution strategies."""

from .components import build_component, load_symbol, own_path
from .strategy import ClientServerExecutionStrategy, ExecutionStrategy, SharedMemoryExecutionStrategy
from .trainer import Trainer, agent_import_path, import_path

__all__ = [
    "ClientServerExecutionStrategy",
    "ExecutionStrategy",
    "SharedMemoryExecutionStrategy",
    "Trainer",
    "agent_import_path",
    "build_component",
    "import_path",
    "load_symbol",
    "own_path",
]
