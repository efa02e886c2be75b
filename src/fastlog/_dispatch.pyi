from typing import Any, Dict, List, Tuple

from . import _core

#: The compiled module, with the selected level's kernel table.
core = _core

LEVELS: Tuple[str, ...]
OLD_NAMES: Dict[str, str]
def supported_levels() -> List[str]: ...
def level_name(name: str) -> str: ...
def kernels(level: str) -> Any: ...
