"""fastlog's version (one place: pyproject.toml and meson.build carry the same string)."""
__version__ = "0.1.0"
