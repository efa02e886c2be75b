# Codes passed between the Python wrappers and the compiled layer.  The Python
# side uses the IntEnums of fastlog/_enums.py, which must hold the same values
# (tests/test_compiled_api.py checks them against fastlog._core.ENUMS).

cdef enum Op:
    OP_LOG_SOFTMAX = 0
    OP_SOFTMAX = 1
    OP_LOGSUMEXP = 2

cdef enum Reduction:
    RED_NONE = 0
    RED_MEAN = 1
    RED_SUM = 2
    RED_BATCHMEAN = 3   # kl_div's, reduced in Python (fastlog/_losses/_reduce.py)

cdef enum MLPMode:
    MLP_GRAD = 0        # gradients into the workspace's gradient buffer
    MLP_SGD = 1         # SGD update of the parameters

cdef enum MLPOutput:
    MLP_LOGITS = 0
    MLP_LOG_PROBA = 1
    MLP_PROBA = 2
    MLP_LABELS = 3

cdef enum MLPStatus:
    MLP_OK = -1
    MLP_NONFINITE = -2  # loss not finite; nothing updated (>= 0: first bad label row)
