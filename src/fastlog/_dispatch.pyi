from typing import Any, List, Tuple

from . import _core

#: The compiled module, with the selected level's kernel table.
core = _core

LEVELS: Tuple[str, ...]
def supported_levels() -> List[str]: ...
def kernels(level: str) -> Any: ...
