"""HOPE memory stack: self-modifying Titans memory, Continuum Memory System levels, classification head."""
from .head import HeadOutput, HopeHead, PoolHead, build_head
from .memory import CMSLevel, MemoryOptions, SelfModTitans

__all__ = ["HeadOutput", "HopeHead", "PoolHead", "build_head", "CMSLevel", "MemoryOptions", "SelfModTitans"]
