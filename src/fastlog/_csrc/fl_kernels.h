/* fastlog C kernels: vectorizable math and the row kernels, for float32 and
 * float64.  Everything is static inline so each ISA build of _core gets its
 * own copy compiled with its own -m flags. */
#ifndef FL_KERNELS_H
#define FL_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "fl_math.h"
#include "fl_transpose.h"

#ifndef FL_ISA_NAME
#define FL_ISA_NAME "baseline"
#endif

#ifdef _OPENMP
#include <omp.h>
#define FL_OPENMP 1
#else
#define FL_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_procs(void) { return 1; }
#endif

/* CPU features, for choosing the ISA build at import time. */
static inline int fl_cpu_has_avx2_fma(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static inline int fl_cpu_has_avx512(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return fl_cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

#define T float
#ifdef FL_TR_F32
#define FL_TR FL_TR_F32   /* register transposes of fl_transpose.h */
#endif
#define FL_SFX f32
#define FL_EXP fl_expf
#define FL_EXP_NP fl_expf_nonpos
#define FL_LOG fl_logf
#define FL_LOG1P fl_log1pf
#include "fl_rows_impl.h"
#undef T
#undef FL_TR
#undef FL_SFX
#undef FL_EXP
#undef FL_EXP_NP
#undef FL_LOG
#undef FL_LOG1P

#define T double
#ifdef FL_TR_F64
#define FL_TR FL_TR_F64
#endif
#define FL_SFX f64
#define FL_EXP fl_exp
#define FL_EXP_NP fl_exp_nonpos
#define FL_LOG fl_log
#define FL_LOG1P fl_log1p
#include "fl_rows_impl.h"
#undef T
#undef FL_TR
#undef FL_SFX
#undef FL_EXP
#undef FL_EXP_NP
#undef FL_LOG
#undef FL_LOG1P

#include "fl_half.h"   /* bfloat16 / float16 on top of the float32 kernels */

#endif
