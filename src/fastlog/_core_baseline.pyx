# cython: language_level=3
# The baseline build of the kernels in _core.pxi (flags chosen in setup.py).
include "_core.pxi"
