from typing import List, Tuple

from . import _core_baseline as core  # the build chosen at import has the same API

LEVELS: Tuple[str, ...]
def supported_levels() -> List[str]: ...
