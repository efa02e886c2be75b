from typing import Any, List, Tuple

from . import _core as core

LEVELS: Tuple[str, ...]
def supported_levels() -> List[str]: ...
def kernels(level: str) -> Any: ...
