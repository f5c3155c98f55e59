"""Write training algorithms against the store: class (`Algorithm`) or functional (`@algo`) form."""

from .base import Algorithm
from .decorators import with_llm_proxy, with_store
from .functional import FunctionalAlgorithm, algo
from .utils import batch_iter_over_dataset

__all__ = ["Algorithm", "FunctionalAlgorithm", "algo", "batch_iter_over_dataset", "with_llm_proxy", "with_store"]
