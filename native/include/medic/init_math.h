// The per-element math of init_normal / init_uniform, shared by the CPU (native/cpu/init.cpp) and CUDA
// (native/cuda/init.cu) kernels so that both produce the same floats bit for bit.
//
// Why a shared header and not libm: glibc and the CUDA math library agree on +, -, *, /, sqrt and fma
// (IEEE, correctly rounded) but not on log/erf/exp, which may differ in the last ulp; and nvcc contracts
// a*b + c into one fma where the host compiler (x86-64 baseline, no FMA unit in the ISA) rounds twice.
// So everything below is written with correctly rounded primitives only:
//   - every multiply-add is an explicit fma (MEDIC_FMA: std::fma on the host, __fma_rn on the device);
//   - the remaining products and sums go through MEDIC_DMUL / MEDIC_DADD, which on the device are the
//     non-contractible __dmul_rn / __dadd_rn; on the host they are plain operators (no FMA to contract
//     into at the baseline ISA the project builds for; a host build with FMA contraction enabled by
//     default, e.g. GCC on aarch64, would need -ffp-contract=off for init.cpp);
//   - log is our own (below), and the normal quantile is Wichura's AS241 (rational functions, about
//     1e-16 relative accuracy), which needs only log and sqrt: no erf, no exp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "medic/rng.h"

#if defined(__CUDA_ARCH__)
#define MEDIC_FMA(a, b, c) __fma_rn((a), (b), (c))
#define MEDIC_DMUL(a, b) __dmul_rn((a), (b))
#define MEDIC_DADD(a, b) __dadd_rn((a), (b))
#define MEDIC_DDIV(a, b) __ddiv_rn((a), (b))
#define MEDIC_DSQRT(a) __dsqrt_rn(a)
#else
#define MEDIC_FMA(a, b, c) std::fma((a), (b), (c))
#define MEDIC_DMUL(a, b) ((a) * (b))
#define MEDIC_DADD(a, b) ((a) + (b))
#define MEDIC_DDIV(a, b) ((a) / (b))
#define MEDIC_DSQRT(a) std::sqrt(a)
#endif

namespace medic {

MEDIC_HD uint64_t f64_bits(double x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t u;
  std::memcpy(&u, &x, 8);
  return u;
#endif
}
MEDIC_HD double f64_from_bits(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double x;
  std::memcpy(&x, &u, 8);
  return x;
#endif
}

// Natural log of a positive finite x, to a few ulp, identical on host and device.
// x = 2^e m with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.1716,
// summed as the series 2 s + 2 s^3/3 + ... + 2 s^23/23 (the next term is below 1e-18 relative).
MEDIC_HD double det_log(double x) {
  if (!(x > 0.0)) return x == 0.0 ? -INFINITY : NAN;
  if (x == INFINITY) return x;
  double e = 0.0;
  if (x < 2.2250738585072014e-308) {         // subnormal: scale into the normal range (exact)
    x = MEDIC_DMUL(x, 18014398509481984.0);  // 2^54
    e = -54.0;
  }
  uint64_t u = f64_bits(x);
  e += static_cast<double>(static_cast<int>((u >> 52) & 0x7ff) - 1023);
  double m = f64_from_bits((u & 0x000fffffffffffffull) | 0x3ff0000000000000ull);  // [1, 2)
  if (m > 1.4142135623730951) {
    m = MEDIC_DMUL(m, 0.5);
    e = MEDIC_DADD(e, 1.0);
  }
  const double f = MEDIC_DADD(m, -1.0);  // exact (Sterbenz)
  const double s = MEDIC_DDIV(f, MEDIC_DADD(2.0, f));
  const double z = MEDIC_DMUL(s, s);
  double p = 2.0 / 23.0;
  p = MEDIC_FMA(p, z, 2.0 / 21.0);
  p = MEDIC_FMA(p, z, 2.0 / 19.0);
  p = MEDIC_FMA(p, z, 2.0 / 17.0);
  p = MEDIC_FMA(p, z, 2.0 / 15.0);
  p = MEDIC_FMA(p, z, 2.0 / 13.0);
  p = MEDIC_FMA(p, z, 2.0 / 11.0);
  p = MEDIC_FMA(p, z, 2.0 / 9.0);
  p = MEDIC_FMA(p, z, 2.0 / 7.0);
  p = MEDIC_FMA(p, z, 2.0 / 5.0);
  p = MEDIC_FMA(p, z, 2.0 / 3.0);
  const double log_m = MEDIC_FMA(s, MEDIC_DMUL(z, p), MEDIC_DMUL(2.0, s));
  // e ln2 with ln2 split (fdlibm): e * ln2_hi is exact for |e| < 2^11.
  const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  return MEDIC_DADD(MEDIC_DMUL(e, ln2_hi), MEDIC_FMA(e, ln2_lo, log_m));
}

// Horner with explicit fmas: c[0] + c[1] r + ... + c[7] r^7, coefficients highest first.
MEDIC_HD double det_poly7(double r, double c7, double c6, double c5, double c4, double c3, double c2, double c1,
                          double c0) {
  double p = c7;
  p = MEDIC_FMA(p, r, c6);
  p = MEDIC_FMA(p, r, c5);
  p = MEDIC_FMA(p, r, c4);
  p = MEDIC_FMA(p, r, c3);
  p = MEDIC_FMA(p, r, c2);
  p = MEDIC_FMA(p, r, c1);
  return MEDIC_FMA(p, r, c0);
}

// Phi^-1(p), the standard normal quantile, for p in (0, 1) (+-inf at the ends).
// M. J. Wichura, "Algorithm AS 241: The percentage points of the normal distribution", Applied
// Statistics 37(3), 1988: PPND16, relative accuracy about 1e-16.
MEDIC_HD double normal_quantile(double p) {
  if (!(p > 0.0)) return -INFINITY;
  if (!(p < 1.0)) return INFINITY;
  const double q = MEDIC_DADD(p, -0.5);
  if (fabs(q) <= 0.425) {
    const double r = MEDIC_FMA(-q, q, 0.180625);
    const double num = det_poly7(r, 2.5090809287301226727e+3, 3.3430575583588128105e+4, 6.7265770927008700853e+4,
                                 4.5921953931549871457e+4, 1.3731693765509461125e+4, 1.9715909503065514427e+3,
                                 1.3314166789178437745e+2, 3.3871328727963666080e+0);
    const double den = det_poly7(r, 5.2264952788528545610e+3, 2.8729085735721942674e+4, 3.9307895800092710610e+4,
                                 2.1213794301586595867e+4, 5.3941960214247511077e+3, 6.8718700749205790830e+2,
                                 4.2313330701600911252e+1, 1.0);
    return MEDIC_DDIV(MEDIC_DMUL(q, num), den);
  }
  double r = q < 0.0 ? p : MEDIC_DADD(1.0, -p);
  r = MEDIC_DSQRT(-det_log(r));
  double v;
  if (r <= 5.0) {
    r = MEDIC_DADD(r, -1.6);
    const double num = det_poly7(r, 7.74545014278341407640e-4, 2.27238449892691845833e-2, 2.41780725177450611770e-1,
                                 1.27045825245236838258e+0, 3.64784832476320460504e+0, 5.76949722146069140550e+0,
                                 4.63033784615654529590e+0, 1.42343711074968357734e+0);
    const double den = det_poly7(r, 1.05075007164441684324e-9, 5.47593808499534494600e-4, 1.51986665636164571966e-2,
                                 1.48103976427480074590e-1, 6.89767334985100004550e-1, 1.67638483018380384940e+0,
                                 2.05319162663775882187e+0, 1.0);
    v = MEDIC_DDIV(num, den);
  } else {
    r = MEDIC_DADD(r, -5.0);
    const double num = det_poly7(r, 2.01033439929228813265e-7, 2.71155556874348757815e-5, 1.24266094738807843860e-3,
                                 2.65321895265761230930e-2, 2.96560571828504891230e-1, 1.78482653991729133580e+0,
                                 5.46378491116411436990e+0, 6.65790464350110377720e+0);
    const double den = det_poly7(r, 2.04426310338993978564e-15, 1.42151175831644588870e-7, 1.84631831751005468180e-5,
                                 7.86869131145613259100e-4, 1.48753612908506148525e-2, 1.36929880922735805310e-1,
                                 5.99832206555887937690e-1, 1.0);
    v = MEDIC_DDIV(num, den);
  }
  return q < 0.0 ? -v : v;
}

// The parameters of one init_normal call, computed once on the host (pa, pb use std::erfc there: they
// are the same two numbers for every element and every backend, so libm differences cannot matter).
struct TruncNormal {
  double mean, sd, lo, hi;
  double pa, pb;  // Phi((lo - mean) / sd), Phi((hi - mean) / sd)
};

inline double std_normal_cdf(double x) { return 0.5 * std::erfc(-x * 0.7071067811865476); }

inline TruncNormal trunc_normal_params(double mean, double sd, double lo, double hi) {
  return TruncNormal{mean, sd, lo, hi, std_normal_cdf((lo - mean) / sd), std_normal_cdf((hi - mean) / sd)};
}

// Element i of init_normal: u uniform in (pa, pb), x = mean + sd Phi^-1(u), clamped to [lo, hi].
MEDIC_HD float trunc_normal_value(const TruncNormal& t, uint64_t seed, uint64_t stream, uint64_t i) {
  const double u = MEDIC_FMA(MEDIC_DADD(t.pb, -t.pa), rng_uniform_open(seed, stream, i), t.pa);
  double v = MEDIC_FMA(t.sd, normal_quantile(u), t.mean);
  if (!(v >= t.lo)) v = t.lo;  // also catches a NaN
  if (v > t.hi) v = t.hi;
  return static_cast<float>(v);
}

// Element i of init_uniform: lo + (hi - lo) u in double, u with 24 random bits, rounded to f32; a value
// that rounds up to hi is moved one ulp below it (below_hi = nextafter(float(hi), -inf), from the host).
MEDIC_HD float uniform_value(double lo, double hi, float hi_f, float below_hi, uint64_t seed, uint64_t stream,
                             uint64_t i) {
  const double u = static_cast<double>(rng_uniform(seed, stream, i));
  const float v = static_cast<float>(MEDIC_DADD(lo, MEDIC_DMUL(MEDIC_DADD(hi, -lo), u)));
  return v >= hi_f ? below_hi : v;
}

}  // namespace medic
