"""Write training algorithms against the store: class (`Algorithm`) or functional (`@algo`) form."""

from .base import Algorithm
from .baseline import Baseline
from .decorators import with_llm_proxy, with_store
from .functional import FunctionalAlgorithm, algo
from .unported import APO, VERL, UnportedAlgorithmError
from .utils import batch_iter_over_dataset

__all__ = [
    "APO",
    "VERL",
    "Algorithm",
    "Baseline",
    "FunctionalAlgorithm",
    "UnportedAlgorithmError",
    "algo",
    "batch_iter_over_dataset",
    "with_llm_proxy",
    "with_store",
]
