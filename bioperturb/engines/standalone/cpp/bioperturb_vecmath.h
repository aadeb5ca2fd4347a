// bioperturb: SIMD tanh from glibc's libmvec, included in every code object.
// glibc declares its SIMD variants (libmvec) only under -ffinite-math-only, which Brian2's
// flags switch off (-fno-finite-math-only); this header re-declares tanh with GCC's `simd`
// attribute so that loops over units call the AVX versions (about 5x faster per call here;
// within a few ulp of the scalar tanh).
#ifndef BIOPERTURB_VECMATH_H
#define BIOPERTURB_VECMATH_H
#include <cmath>
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
extern "C" double tanh(double) throw() __attribute__((simd("notinbranch")));
#endif
#endif
