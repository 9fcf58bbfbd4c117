"""`rebel compare`: the paper's TL;DR table at laptop scale, every algorithm through the same
engine."""
from .config import CompareConfig
from .grid import compare

__all__ = ["CompareConfig", "compare"]
