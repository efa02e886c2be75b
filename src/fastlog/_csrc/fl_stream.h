/* fastlog: streaming (non-temporal) stores, for outputs larger than the
 * caches.
 *
 * A kernel whose output will not be read again before it leaves the cache
 * (an N x C gradient of 64 MB) pays for it three times with ordinary stores:
 * the line is first read from memory (read-for-ownership), then written back.
 * Streaming stores skip the read.  The kernels compute a block of results
 * into a small buffer in L1 and hand it to fl_stream_copy; the Cython layer
 * decides per call (by the output's size) whether to stream.
 *
 * Compiled per ISA level (included by fl_kernels.c): 64-byte stores in the
 * x86-64-v4 build, 32 in the x86-64-v3 one, 16 (SSE2, part of x86-64) in the
 * x86-64 one; on aarch64 STNP, the non-temporal store of a pair of 16-byte
 * registers (every aarch64 level); a plain memcpy elsewhere.  Only whole
 * aligned blocks are streamed; the unaligned head and tail are ordinary
 * stores.  The results are the same bytes either way; fl_stream_fence() (an
 * sfence / a store barrier) orders the streamed stores before a kernel
 * returns. */
#ifndef FL_STREAM_H
#define FL_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FL_STREAM_X86 1
#else
#define FL_STREAM_X86 0
#endif
#if defined(__aarch64__) && defined(__GNUC__)
#include <arm_neon.h>
#define FL_STREAM_ARM 1
#else
#define FL_STREAM_ARM 0
#endif

static inline void fl_stream_copy(void *dst, const void *src, size_t bytes)
{
#if FL_STREAM_X86
#if defined(__AVX512F__)
    enum { VB = 64 };
#elif defined(__AVX2__)
    enum { VB = 32 };
#else
    enum { VB = 16 };
#endif
    char *d = (char *)dst;
    const char *s = (const char *)src;
    size_t head = (size_t)(-(uintptr_t)d) & (VB - 1);
    if (head > bytes) head = bytes;
    memcpy(d, s, head);
    d += head; s += head; bytes -= head;
    size_t k = 0;
    for (; k + VB <= bytes; k += VB) {
#if defined(__AVX512F__)
        _mm512_stream_si512((void *)(d + k), _mm512_loadu_si512((const void *)(s + k)));
#elif defined(__AVX2__)
        _mm256_stream_si256((__m256i *)(d + k), _mm256_loadu_si256((const __m256i *)(s + k)));
#else
        _mm_stream_si128((__m128i *)(d + k), _mm_loadu_si128((const __m128i *)(s + k)));
#endif
    }
    memcpy(d + k, s + k, bytes - k);
#elif FL_STREAM_ARM
    enum { VB = 32 };
    char *d = (char *)dst;
    const char *s = (const char *)src;
    size_t head = (size_t)(-(uintptr_t)d) & (VB - 1);
    if (head > bytes) head = bytes;
    memcpy(d, s, head);
    d += head; s += head; bytes -= head;
    size_t k = 0;
    for (; k + VB <= bytes; k += VB) {
        const uint8x16_t a = vld1q_u8((const uint8_t *)(s + k)), b = vld1q_u8((const uint8_t *)(s + k + 16));
        __asm__ volatile("stnp %q0, %q1, [%2]" : : "w"(a), "w"(b), "r"(d + k) : "memory");
    }
    memcpy(d + k, s + k, bytes - k);
#else
    memcpy(dst, src, bytes);
#endif
}

/* Ask for `bytes` from p to be brought into L2 (a hint: never faults). */
static inline void fl_prefetch_l2(const void *p, size_t bytes)
{
    const char *c = (const char *)p;
    for (size_t k = 0; k < bytes; k += 64) __builtin_prefetch(c + k, 0, 2);
}

static inline void fl_stream_fence(void)
{
#if FL_STREAM_X86
    _mm_sfence();
#elif FL_STREAM_ARM
    __asm__ volatile("dmb ishst" : : : "memory");
#endif
}

#endif
