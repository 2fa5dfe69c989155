/* Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
   SC 2011) and the uniform and normal numbers madlab draws from it, on the CPU (loaded by
   loops/philox.py, which holds the same arithmetic in torch ops for every other device).

   Seed k's stream is Philox under its 64-bit key (k0 = low word, k1 = high word); block b of the
   stream of kind K is the Philox output of the counter (b mod 2^32, b div 2^32, K, 0), four 32-bit
   words. Number p of a draw of kind K comes from block p / PER[K]:
     K = 0  float32 uniform on [0, 1):  (w >> 8) 2^-24                             4 per block
     K = 1  float32 normal (Box-Muller): words (w0, w1) and (w2, w3) are two pairs  4 per block
     K = 2  float64 uniform on [0, 1):  53 bits from two words                     2 per block
     K = 3  float64 normal: one pair of 53-bit uniforms per block                  2 per block
   Normals are computed in float64 with sqrt(-2 ln u1) and cos / sin(2 pi u2) written out as
   polynomials and Newton steps in + - * / only (no libm, no hardware sqrt), every operation one
   IEEE-754 double rounding, in the same order as philox.py; this file is compiled with
   -ffp-contract=off so that no multiply-add is fused. So the C kernel, torch on the CPU and torch
   on CUDA give the same bits (tests/test_rng.py checks C against torch ops bit for bit). */
#include <stdint.h>
#include <string.h>

#define LANES 64  /* Philox blocks computed side by side (vector loops; 16: 1.5x slower) */

static const uint32_t PHILOX_M0 = 0xD2511F53u, PHILOX_M1 = 0xCD9E8D57u;
static const uint32_t PHILOX_W0 = 0x9E3779B9u, PHILOX_W1 = 0xBB67AE85u;
static const long PER[4] = {4, 4, 2, 2};

/* Constants as exact hex literals; philox.py derives the same doubles from their formulas. */
static const double PI4 = 0x1.921fb54442d18p-1;        /* pi / 4 */
static const double LN2 = 0x1.62e42fefa39efp-1;        /* ln 2 */
static const double SQRT_HALF = 0x1.6a09e667f3bcdp-1;  /* sqrt(1/2) */
static const double LOG_C[11] = {  /* 2 / (2k + 1), k = 1..11: ln m = 2s + s (z R(z)) */
    0x1.5555555555555p-1, 0x1.999999999999ap-2, 0x1.2492492492492p-2, 0x1.c71c71c71c71cp-3,
    0x1.745d1745d1746p-3, 0x1.3b13b13b13b14p-3, 0x1.1111111111111p-3, 0x1.e1e1e1e1e1e1ep-4,
    0x1.af286bca1af28p-4, 0x1.8618618618618p-4, 0x1.642c8590b2164p-4};
static const double SIN_C[8] = {  /* (-1)^k / (2k + 1)!, k = 1..8 */
    -0x1.5555555555555p-3, 0x1.1111111111111p-7, -0x1.a01a01a01a01ap-13, 0x1.71de3a556c734p-19,
    -0x1.ae64567f544e4p-26, 0x1.6124613a86d09p-33, -0x1.ae7f3e733b81fp-41, 0x1.952c77030ad4ap-49};
static const double COS_C[8] = {  /* (-1)^k / (2k)!, k = 1..8 */
    -0x1.0000000000000p-1, 0x1.5555555555555p-5, -0x1.6c16c16c16c17p-10, 0x1.a01a01a01a01ap-16,
    -0x1.27e4fb7789f5cp-22, 0x1.1eed8eff8d898p-29, -0x1.93974a8c07c9dp-37, 0x1.ae7f3e733b81fp-45};

/* Ten Philox rounds on LANES counters at once, in place; the key is bumped between rounds. */
static inline void philox_lanes(uint32_t *x0, uint32_t *x1, uint32_t *x2, uint32_t *x3,
                                uint32_t k0, uint32_t k1)
{
    for (int r = 0; r < 10; r++) {
        for (int j = 0; j < LANES; j++) {
            const uint64_t p0 = (uint64_t)PHILOX_M0 * x0[j], p1 = (uint64_t)PHILOX_M1 * x2[j];
            const uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1[j] ^ k0;
            const uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3[j] ^ k1;
            x1[j] = (uint32_t)p1;
            x3[j] = (uint32_t)p0;
            x0[j] = y0;
            x2[j] = y2;
        }
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

/* The raw generator, one counter at a time: out[4i..4i+3] = Philox4x32-10(ctr[4i..], key[2i..]).
   For the known-answer tests. */
void philox4x32_10(long n, const uint32_t *ctr, const uint32_t *key, uint32_t *out)
{
    for (long i = 0; i < n; i++) {
        uint32_t x[4][LANES] = {{0}};
        for (int w = 0; w < 4; w++) x[w][0] = ctr[4 * i + w];
        philox_lanes(x[0], x[1], x[2], x[3], key[2 * i], key[2 * i + 1]);
        for (int w = 0; w < 4; w++) out[4 * i + w] = x[w][0];
    }
}

/* sqrt(x) for x in [0, 2^1023): x = m 2^e with e even and m in [1/2, 2) (bit operations: exact);
   1/sqrt(m) from a quadratic first guess (3.7 % off) by four Newton steps
   r <- r (3/2 - (m/2) r^2) (error 4e-21 before rounding), then sqrt(x) = (m r) 2^(e/2). Not the
   hardware square root: torch's CPU sqrt (MKL / Sleef) is not correctly rounded, so it would not
   give CUDA's bits; this sequence of multiplications and additions gives the same bits anywhere. */
static inline double root(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    int64_t e = (int64_t)((bits >> 52) & 0x7ff) - 1022;           /* x = m 2^e, m in [1/2, 1) */
    bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FE0000000000000ull;
    double m;
    memcpy(&m, &bits, sizeof m);
    const int64_t odd = e & 1;
    m = odd ? m * 2.0 : m;
    e = e - odd;
    const double h = m * 0.5;
    double r = (m * 0.2794 + -1.1174) * m + 1.8507;
    for (int k = 0; k < 4; k++) r = r * (1.5 - h * (r * r));
    const uint64_t scale_bits = (uint64_t)(e / 2 + 1023) << 52;
    double scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return x == 0.0 ? 0.0 : (m * r) * scale;
}

/* sqrt(-2 ln u) for u = q 2^-bits in (0, 1]. ln u = e ln 2 + ln m with u = m 2^e, m in
   [sqrt(1/2), sqrt(2)) (frexp by bit operations: exact); ln m = 2 atanh(s), s = (m - 1) / (m + 1),
   by its series to s^23 (|s| <= 0.172: truncation below 2^-60 relative). */
static inline double radius(double u)
{
    uint64_t bits;
    memcpy(&bits, &u, sizeof bits);
    int64_t e = (int64_t)((bits >> 52) & 0x7ff) - 1022;
    bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FE0000000000000ull;
    double m;
    memcpy(&m, &bits, sizeof m);                     /* u = m 2^e, m in [1/2, 1) */
    const int64_t low = m < SQRT_HALF;
    m = low ? m * 2.0 : m;
    e = e - low;
    const double f = m - 1.0;
    const double s = f / (f + 2.0);
    const double z = s * s;
    double R = LOG_C[10];
    for (int k = 9; k >= 0; k--) R = z * R + LOG_C[k];
    const double lnm = s * 2.0 + s * (z * R);
    const double L = (double)e * LN2 + lnm;
    return root(L * -2.0);
}

/* cos and sin of 2 pi v 2^-bits (v < 2^bits) by octant: o = top 3 bits, t the rest (reflected in
   odd octants), theta = t pi/4 2^-(bits-3) in [0, pi/4], Taylor series to theta^17 and theta^16. */
static inline void cos_sin(uint64_t v, int bits, double *c, double *s)
{
    const int sh = bits - 3;
    const uint64_t o = v >> sh, r = v & ((1ull << sh) - 1);
    const uint64_t t = (o & 1) ? (1ull << sh) - r : r;
    const double th = (double)(int64_t)t * (PI4 / (double)(1ull << sh));
    const double z = th * th;
    double P = SIN_C[7], Q = COS_C[7];
    for (int k = 6; k >= 0; k--) {
        P = z * P + SIN_C[k];
        Q = z * Q + COS_C[k];
    }
    const double S = th + th * (z * P), C = z * Q + 1.0;
    const int swap = (int)((o + 1) >> 1) & 1;
    double cv = swap ? S : C, sv = swap ? C : S;
    cv = (((o + 2) >> 2) & 1) ? -cv : cv;
    sv = ((o >> 2) & 1) ? -sv : sv;
    *c = cv;
    *s = sv;
}

static inline uint64_t bits53(uint32_t a, uint32_t b)
{
    return ((uint64_t)(a >> 5) << 26) | (b >> 6);
}

/* The numbers of LANES blocks of kind K (words x0..x3) into v, block j at v[j PER[K] ...]. Each
   kind is its own loops over the lanes, so that the compiler vectorizes them. */
static void numbers(long kind, const uint32_t *x0, const uint32_t *x1, const uint32_t *x2,
                    const uint32_t *x3, double *v)
{
    if (kind == 0) {
        for (int j = 0; j < LANES; j++) {
            v[4 * j + 0] = (double)(x0[j] >> 8) * 0x1p-24;
            v[4 * j + 1] = (double)(x1[j] >> 8) * 0x1p-24;
            v[4 * j + 2] = (double)(x2[j] >> 8) * 0x1p-24;
            v[4 * j + 3] = (double)(x3[j] >> 8) * 0x1p-24;
        }
    } else if (kind == 1) {
        double r[2 * LANES], c[2 * LANES], s[2 * LANES];
        for (int j = 0; j < LANES; j++) {
            r[j] = radius((double)(int64_t)(0x100000000ull - x0[j]) * 0x1p-32);
            r[LANES + j] = radius((double)(int64_t)(0x100000000ull - x2[j]) * 0x1p-32);
        }
        for (int j = 0; j < LANES; j++) {
            cos_sin(x1[j], 32, c + j, s + j);
            cos_sin(x3[j], 32, c + LANES + j, s + LANES + j);
        }
        for (int j = 0; j < LANES; j++) {
            v[4 * j + 0] = r[j] * c[j];
            v[4 * j + 1] = r[j] * s[j];
            v[4 * j + 2] = r[LANES + j] * c[LANES + j];
            v[4 * j + 3] = r[LANES + j] * s[LANES + j];
        }
    } else if (kind == 2) {
        for (int j = 0; j < LANES; j++) {
            v[2 * j + 0] = (double)(int64_t)bits53(x0[j], x1[j]) * 0x1p-53;
            v[2 * j + 1] = (double)(int64_t)bits53(x2[j], x3[j]) * 0x1p-53;
        }
    } else {
        double r[LANES], c[LANES], s[LANES];
        for (int j = 0; j < LANES; j++)
            r[j] = radius((double)(int64_t)((1ull << 53) - bits53(x0[j], x1[j])) * 0x1p-53);
        for (int j = 0; j < LANES; j++) cos_sin(bits53(x2[j], x3[j]), 53, c + j, s + j);
        for (int j = 0; j < LANES; j++) {
            v[2 * j + 0] = r[j] * c[j];
            v[2 * j + 1] = r[j] * s[j];
        }
    }
}

/* For seeds [0, n): out row i (count numbers, float32 for kinds 0 and 1, float64 for 2 and 3)
   = numbers offset .. offset + count - 1 of the stream of kind `kind` under keys[i]. */
void philox_draw(long n, const int64_t *keys, long kind, int64_t offset, long count, void *out)
{
    const long per = PER[kind];
    const int wide = kind >= 2;
    if (count <= 0) return;
    const int64_t first = offset / per, last = (offset + count - 1) / per;
    for (long i = 0; i < n; i++) {
        const uint32_t k0 = (uint32_t)keys[i], k1 = (uint32_t)((uint64_t)keys[i] >> 32);
        float *of = (float *)out + (wide ? 0 : i * count);
        double *od = (double *)out + (wide ? i * count : 0);
        for (int64_t b = first; b <= last; b += LANES) {
            uint32_t x0[LANES], x1[LANES], x2[LANES], x3[LANES];
            for (int j = 0; j < LANES; j++) {
                const uint64_t block = (uint64_t)(b + j);
                x0[j] = (uint32_t)block;
                x1[j] = (uint32_t)(block >> 32);
                x2[j] = (uint32_t)kind;
                x3[j] = 0;
            }
            philox_lanes(x0, x1, x2, x3, k0, k1);
            double v[LANES * 4];
            numbers(kind, x0, x1, x2, x3, v);
            /* numbers b*per .. (b+LANES)*per - 1 are in v; keep those inside the draw */
            const int64_t lo = b * per > offset ? b * per : offset;
            const int64_t end = (b + LANES) * per, hi = end < offset + count ? end : offset + count;
            const double *src = v + (lo - b * per);
            if (wide) {
                memcpy(od + (lo - offset), src, (size_t)(hi - lo) * sizeof(double));
            } else {
                float *dst = of + (lo - offset);
                for (int64_t p = 0; p < hi - lo; p++) dst[p] = (float)src[p];
            }
        }
    }
}
