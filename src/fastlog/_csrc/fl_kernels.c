/* fastlog's C kernels for one ISA level: compiled once per level by
 * meson.build with that level's flags and -DFL_ISA=<level>, and exported as
 * ONE table, fl_ktab_<level> (see fl_kernels.h).  Every kernel is static, so
 * the per-level objects never clash. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fl_kernels.h"
#include "fl_math.h"
#include "fl_stream.h"
#include "fl_transpose.h"

#ifndef FL_ISA
#error "compile fl_kernels.c with -DFL_ISA=<level> (see meson.build)"
#endif
#define FL_STR2(a) #a
#define FL_STR(a) FL_STR2(a)
#define FL_TAB2(a) fl_ktab_##a
#define FL_TAB(a) FL_TAB2(a)


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
#include "fl_nn_impl.h"
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
#include "fl_nn_impl.h"
#undef T
#undef FL_TR
#undef FL_SFX
#undef FL_EXP
#undef FL_EXP_NP
#undef FL_LOG
#undef FL_LOG1P

#include "fl_half.h"   /* bfloat16 / float16 on top of the float32 kernels */

/* The table, filled from FL_KERNEL_LIST: a kernel missing here, or one whose
 * type differs from its declaration, is a compile error. */
#define FL_KT_F32(ret, name, params) fl_##name##_f32,
#define FL_KT_F64(ret, name, params) fl_##name##_f64,
const fl_ktab FL_TAB(FL_ISA) = {
    FL_STR(FL_ISA),
    { FL_KERNEL_LIST(FL_KT_F32, float) },
    { FL_KERNEL_LIST(FL_KT_F64, double) },
    { fl_h2f_n, fl_f2h_n, fl_half_rows },
};
