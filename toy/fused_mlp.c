/* Fused row kernels of the toy DDPM's residual block on the CPU (loaded by toy/fused.py).

   A residual block computes, per row (one training point or sample of one seed),
       v = u + b + e W_e            (u = h W_h, the matrix product, done by torch's BLAS)
       n = (v - mean v) / sqrt(var v + 1e-5)          (LayerNorm statistics, biased variance)
       y = relu(n * g + beta)
   Written with torch ops this is ~8 passes over [seeds, rows, width] tensors forward and ~12
   backward, and on a CPU those memory-bound passes, not the matrix products, set the step time
   (docs/performance.md). Here each row is read once and its 64 values stay in registers.

   Layout: every activation is [S, B, W] contiguous (S seeds, B rows per seed, width W); every
   per-seed parameter is [S, W] (bias, g, beta) or [S, E, W] (W_e); the time input e is
   [S, emb_rows, E] with emb_rows = B (one time per row, training) or 1 (one per seed, sampling).
   ReLU follows torch: relu(NaN) = NaN and its gradient is taken where the output is > 0, so a
   diverged model still shows up as NaN downstream. */
#include <math.h>
#include <string.h>

#define MAXW 4096

/* Forward. y = relu(n g + beta); if res_out: res_out = res_in + y (the residual add; may alias
   res_in), else out = y (may alias u). If n_save: the normalized n and 1/std are kept for the
   backward pass, which recomputes the ReLU mask from them. */
static inline __attribute__((always_inline)) void
fwd_body(long S, long B, const long W, long E, const float *u, const float *bias,
         const float *emb, long emb_rows, const float *we, const float *g, const float *beta,
         float *n_save, float *rstd_save, const float *res_in, float *res_out, float *out)
{
    float v[MAXW];
    for (long s = 0; s < S; s++) {
        const float *bs = bias + s * W, *gs = g + s * W, *hs = beta + s * W;
        const float *wes = E ? we + s * E * W : 0;
        for (long b = 0; b < B; b++) {
            const long r = s * B + b;
            const float *ur = u + r * W;
            float mean = 0.0f, var = 0.0f;
#pragma omp simd
            for (long j = 0; j < W; j++) v[j] = ur[j] + bs[j];
            if (E) {
                const float *er = emb + (s * emb_rows + (emb_rows == 1 ? 0 : b)) * E;
                for (long k = 0; k < E; k++) {
                    const float ek = er[k];
                    const float *wk = wes + k * W;
#pragma omp simd
                    for (long j = 0; j < W; j++) v[j] += ek * wk[j];
                }
            }
#pragma omp simd reduction(+ : mean)
            for (long j = 0; j < W; j++) mean += v[j];
            mean /= (float)W;
#pragma omp simd reduction(+ : var)
            for (long j = 0; j < W; j++) {
                v[j] -= mean;
                var += v[j] * v[j];
            }
            const float rstd = 1.0f / sqrtf(var / (float)W + 1e-5f);
            float *outr = out ? out + r * W : 0;
            if (n_save) {
                float *nr = n_save + r * W;
                rstd_save[r] = rstd;
#pragma omp simd
                for (long j = 0; j < W; j++) nr[j] = v[j] * rstd;
            }
            if (res_out) {
                const float *ri = res_in + r * W;
                float *ro = res_out + r * W;
#pragma omp simd
                for (long j = 0; j < W; j++) {
                    const float nj = v[j] * rstd, y = nj * gs[j] + hs[j];
                    ro[j] = ri[j] + (y < 0.0f ? 0.0f : y);
                }
            } else {
#pragma omp simd
                for (long j = 0; j < W; j++) {
                    const float nj = v[j] * rstd, y = nj * gs[j] + hs[j];
                    outr[j] = y < 0.0f ? 0.0f : y;
                }
            }
        }
    }
}

/* Backward of fwd_ln_relu given dy = d loss / d y: writes (not accumulates) the parameter
   gradients dg, dbeta, db [S, W] and dwe [S, E, W], and dv = d loss / d u [S, B, W] (dv may
   alias dy). The ReLU mask is n g + beta > 0, the same expression as the forward's. */
static inline __attribute__((always_inline)) void
bwd_body(long S, long B, const long W, long E, const float *dy, const float *n,
         const float *rstd, const float *g, const float *beta, const float *emb, long emb_rows,
         float *dg, float *dbeta, float *db, float *dwe, float *dv)
{
    float dn[MAXW];
    for (long s = 0; s < S; s++) {
        const float *gs = g + s * W, *hs = beta + s * W;
        float *dgs = dg + s * W, *dhs = dbeta + s * W, *dbs = db + s * W;
        float *dwes = E ? dwe + s * E * W : 0;
        memset(dgs, 0, W * sizeof(float));
        memset(dhs, 0, W * sizeof(float));
        memset(dbs, 0, W * sizeof(float));
        if (E) memset(dwes, 0, E * W * sizeof(float));
        for (long b = 0; b < B; b++) {
            const long r = s * B + b;
            const float *dyr = dy + r * W, *nr = n + r * W;
            float m1 = 0.0f, m2 = 0.0f;
#pragma omp simd reduction(+ : m1, m2)
            for (long j = 0; j < W; j++) {
                const float du = nr[j] * gs[j] + hs[j] > 0.0f ? dyr[j] : 0.0f;
                dgs[j] += du * nr[j];
                dhs[j] += du;
                dn[j] = du * gs[j];
                m1 += dn[j];
                m2 += dn[j] * nr[j];
            }
            m1 /= (float)W;
            m2 /= (float)W;
            const float rs = rstd[r];
            float *dvr = dv + r * W;
#pragma omp simd
            for (long j = 0; j < W; j++) {
                const float x = rs * (dn[j] - m1 - nr[j] * m2);
                dvr[j] = x;
                dbs[j] += x;
            }
            if (E) {
                const float *er = emb + (s * emb_rows + (emb_rows == 1 ? 0 : b)) * E;
                for (long k = 0; k < E; k++) {
                    const float ek = er[k];
                    float *dk = dwes + k * W;
#pragma omp simd
                    for (long j = 0; j < W; j++) dk[j] += ek * dvr[j];
                }
            }
        }
    }
}

/* The input layer, h = x W_x + b + e W_e, with few inputs (D data dimensions, E time features):
   a handful of multiply-adds per output, one pass instead of two thin matrix products. */
static inline __attribute__((always_inline)) void
fwd_in_body(long S, long B, const long W, long D, long E, const float *x, const float *wx,
            const float *bias, const float *emb, long emb_rows, const float *we, float *out)
{
    for (long s = 0; s < S; s++) {
        const float *bs = bias + s * W, *wxs = wx + s * D * W, *wes = we + s * E * W;
        for (long b = 0; b < B; b++) {
            const long r = s * B + b;
            const float *xr = x + r * D;
            const float *er = emb + (s * emb_rows + (emb_rows == 1 ? 0 : b)) * E;
            float *o = out + r * W;
#pragma omp simd
            for (long j = 0; j < W; j++) o[j] = bs[j];
            for (long k = 0; k < D; k++) {
                const float xk = xr[k];
                const float *wk = wxs + k * W;
#pragma omp simd
                for (long j = 0; j < W; j++) o[j] += xk * wk[j];
            }
            for (long k = 0; k < E; k++) {
                const float ek = er[k];
                const float *wk = wes + k * W;
#pragma omp simd
                for (long j = 0; j < W; j++) o[j] += ek * wk[j];
            }
        }
    }
}

/* Its gradients from dh = d loss / d h: dwx [S, D, W], db [S, W], dwe [S, E, W] (written). */
static inline __attribute__((always_inline)) void
bwd_in_body(long S, long B, const long W, long D, long E, const float *dh, const float *x,
            const float *emb, long emb_rows, float *dwx, float *db, float *dwe)
{
    for (long s = 0; s < S; s++) {
        float *dxs = dwx + s * D * W, *dbs = db + s * W, *des = dwe + s * E * W;
        memset(dxs, 0, D * W * sizeof(float));
        memset(dbs, 0, W * sizeof(float));
        memset(des, 0, E * W * sizeof(float));
        for (long b = 0; b < B; b++) {
            const long r = s * B + b;
            const float *d = dh + r * W, *xr = x + r * D;
            const float *er = emb + (s * emb_rows + (emb_rows == 1 ? 0 : b)) * E;
#pragma omp simd
            for (long j = 0; j < W; j++) dbs[j] += d[j];
            for (long k = 0; k < D; k++) {
                const float xk = xr[k];
                float *dk = dxs + k * W;
#pragma omp simd
                for (long j = 0; j < W; j++) dk[j] += xk * d[j];
            }
            for (long k = 0; k < E; k++) {
                const float ek = er[k];
                float *dk = des + k * W;
#pragma omp simd
                for (long j = 0; j < W; j++) dk[j] += ek * d[j];
            }
        }
    }
}

/* The entry points: the default width 64 gets its own copy, compiled with a constant trip count
   (fully unrolled, no remainder loops); any other width runs the generic copy. */
void fwd_ln_relu(long S, long B, long W, long E, const float *u, const float *bias,
                 const float *emb, long emb_rows, const float *we, const float *g,
                 const float *beta, float *n_save, float *rstd_save, const float *res_in,
                 float *res_out, float *out)
{
    if (W == 64)
        fwd_body(S, B, 64, E, u, bias, emb, emb_rows, we, g, beta, n_save, rstd_save, res_in,
                 res_out, out);
    else
        fwd_body(S, B, W, E, u, bias, emb, emb_rows, we, g, beta, n_save, rstd_save, res_in,
                 res_out, out);
}

void bwd_relu_ln(long S, long B, long W, long E, const float *dy, const float *n,
                 const float *rstd, const float *g, const float *beta, const float *emb,
                 long emb_rows, float *dg, float *dbeta, float *db, float *dwe, float *dv)
{
    if (W == 64)
        bwd_body(S, B, 64, E, dy, n, rstd, g, beta, emb, emb_rows, dg, dbeta, db, dwe, dv);
    else
        bwd_body(S, B, W, E, dy, n, rstd, g, beta, emb, emb_rows, dg, dbeta, db, dwe, dv);
}

void fwd_in(long S, long B, long W, long D, long E, const float *x, const float *wx,
            const float *bias, const float *emb, long emb_rows, const float *we, float *out)
{
    if (W == 64)
        fwd_in_body(S, B, 64, D, E, x, wx, bias, emb, emb_rows, we, out);
    else
        fwd_in_body(S, B, W, D, E, x, wx, bias, emb, emb_rows, we, out);
}

void bwd_in(long S, long B, long W, long D, long E, const float *dh, const float *x,
            const float *emb, long emb_rows, float *dwx, float *db, float *dwe)
{
    if (W == 64)
        bwd_in_body(S, B, 64, D, E, dh, x, emb, emb_rows, dwx, db, dwe);
    else
        bwd_in_body(S, B, W, D, E, dh, x, emb, emb_rows, dwx, db, dwe);
}
