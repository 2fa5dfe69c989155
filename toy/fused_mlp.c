/* Fused row kernels of the toy DDPM on the CPU (loaded by toy/fused.py): each residual block's
   bias + time input (+ LayerNorm) + ReLU (+ residual add), and the thin input and output layers.

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

#define MAXW 1024
#define MAXD 4

/* v = u + bias + e W_e for one row. */
static inline __attribute__((always_inline)) void
row_v(const long W, long E, const float *ur, const float *bs, const float *er, const float *wes,
      float *v)
{
#pragma omp simd
    for (long j = 0; j < W; j++) v[j] = ur[j] + bs[j];
    for (long k = 0; k < E; k++) {
        const float ek = er[k];
        const float *wk = wes + k * W;
#pragma omp simd
        for (long j = 0; j < W; j++) v[j] += ek * wk[j];
    }
}

/* Forward. y = relu(n g + beta); if res_out: res_out = res_in + y (the residual add; may alias
   res_in), else out = y (may alias u unless the statistics are saved). If mean_save: each row's
   mean and 1/std are kept, and u must stay as it is: the backward pass recomputes n from them
   (cheaper than storing n: one pass less over memory). */
static inline __attribute__((always_inline)) void
fwd_body(long S, long B, const long W, long E, const float *u, const float *bias,
         const float *emb, long emb_rows, const float *we, const float *g, const float *beta,
         float *mean_save, float *rstd_save, const float *res_in, float *res_out, float *out)
{
    float v[MAXW];
    for (long s = 0; s < S; s++) {
        const float *bs = bias + s * W, *gs = g + s * W, *hs = beta + s * W;
        const float *wes = E ? we + s * E * W : 0;
        for (long b = 0; b < B; b++) {
            const long r = s * B + b;
            const float *er = E ? emb + (s * emb_rows + (emb_rows == 1 ? 0 : b)) * E : 0;
            row_v(W, E, u + r * W, bs, er, wes, v);
            float mean = 0.0f, var = 0.0f;
#pragma omp simd reduction(+ : mean)
            for (long j = 0; j < W; j++) mean += v[j];
            mean /= (float)W;
#pragma omp simd reduction(+ : var)
            for (long j = 0; j < W; j++) {
                v[j] -= mean;
                var += v[j] * v[j];
            }
            const float rstd = 1.0f / sqrtf(var / (float)W + 1e-5f);
            if (mean_save) {
                mean_save[r] = mean;
                rstd_save[r] = rstd;
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
                float *outr = out + r * W;
#pragma omp simd
                for (long j = 0; j < W; j++) {
                    const float nj = v[j] * rstd, y = nj * gs[j] + hs[j];
                    outr[j] = y < 0.0f ? 0.0f : y;
                }
            }
        }
    }
}

/* Backward of fwd_ln_relu given dy = d loss / d y, the forward's u and its saved statistics:
   writes (not accumulates) the parameter gradients dg, dbeta, db [S, W] and dwe [S, E, W], and
   dv = d loss / d u [S, B, W] (dv may alias dy). n is recomputed by the forward's own
   expressions, so the ReLU mask n g + beta > 0 is the forward's. */
static inline __attribute__((always_inline)) void
bwd_body(long S, long B, const long W, long E, const float *dy, const float *u,
         const float *bias, const float *emb, long emb_rows, const float *we, const float *mean,
         const float *rstd, const float *g, const float *beta, float *dg, float *dbeta,
         float *db, float *dwe, float *dv)
{
    float n[MAXW], dn[MAXW];
    for (long s = 0; s < S; s++) {
        const float *bs = bias + s * W, *gs = g + s * W, *hs = beta + s * W;
        const float *wes = E ? we + s * E * W : 0;
        float *dgs = dg + s * W, *dhs = dbeta + s * W, *dbs = db + s * W;
        float *dwes = E ? dwe + s * E * W : 0;
        memset(dgs, 0, W * sizeof(float));
        memset(dhs, 0, W * sizeof(float));
        memset(dbs, 0, W * sizeof(float));
        if (E) memset(dwes, 0, E * W * sizeof(float));
        for (long b = 0; b < B; b++) {
            const long r = s * B + b;
            const float *er = E ? emb + (s * emb_rows + (emb_rows == 1 ? 0 : b)) * E : 0;
            row_v(W, E, u + r * W, bs, er, wes, n);
            const float mu = mean[r], rs = rstd[r];
            const float *dyr = dy + r * W;
            float m1 = 0.0f, m2 = 0.0f;
#pragma omp simd reduction(+ : m1, m2)
            for (long j = 0; j < W; j++) {
                const float vj = n[j] - mu, nj = vj * rs;
                const float du = nj * gs[j] + hs[j] > 0.0f ? dyr[j] : 0.0f;
                n[j] = nj;
                dgs[j] += du * nj;
                dhs[j] += du;
                dn[j] = du * gs[j];
                m1 += dn[j];
                m2 += dn[j] * nj;
            }
            m1 /= (float)W;
            m2 /= (float)W;
            float *dvr = dv + r * W;
#pragma omp simd
            for (long j = 0; j < W; j++) {
                const float x = rs * (dn[j] - m1 - n[j] * m2);
                dvr[j] = x;
                dbs[j] += x;
            }
            for (long k = 0; k < E; k++) {
                const float ek = er[k];
                float *dk = dwes + k * W;
#pragma omp simd
                for (long j = 0; j < W; j++) dk[j] += ek * dvr[j];
            }
        }
    }
}

/* The block without LayerNorm (the resmlp-sin learner): y = relu(v), v = u + b + e W_e, and
   res_out = res_in + y (may alias res_in) or out = y (may alias u). With one time input per
   seed (emb_rows == 1, sampling) b + e W_e is formed once per seed, not once per row. */
static inline __attribute__((always_inline)) void
fwd_plain_body(long S, long B, const long W, long E, const float *u, const float *bias,
               const float *emb, long emb_rows, const float *we, const float *res_in,
               float *res_out, float *out)
{
    float v[MAXW], c[MAXW];
    for (long s = 0; s < S; s++) {
        const float *bs = bias + s * W;
        const float *wes = E ? we + s * E * W : 0;
        const int per_seed = E && emb_rows == 1;
        if (per_seed) {  /* c = b + e W_e for this seed's one time input */
            const float zero[MAXW] = {0};
            row_v(W, E, zero, bs, emb + s * E, wes, c);
            bs = c;
        }
        const long E_row = per_seed ? 0 : E;
        for (long b = 0; b < B; b++) {
            const long r = s * B + b;
            const float *er = E_row ? emb + (s * emb_rows + b) * E : 0;
            row_v(W, E_row, u + r * W, bs, er, wes, v);
            if (res_out) {
                const float *ri = res_in + r * W;
                float *ro = res_out + r * W;
#pragma omp simd
                for (long j = 0; j < W; j++) ro[j] = ri[j] + (v[j] < 0.0f ? 0.0f : v[j]);
            } else {
                float *outr = out + r * W;
#pragma omp simd
                for (long j = 0; j < W; j++) outr[j] = v[j] < 0.0f ? 0.0f : v[j];
            }
        }
    }
}

/* Backward of fwd_plain given dy = d loss / d y: dv = d loss / d u = dy where v > 0, else 0
   (dv may alias dy); db [S, W] and dwe [S, E, W] written (not accumulated). The mask comes from
   the forward's output y when given (y > 0 exactly where v > 0, NaN included: both false),
   else from v = u + b recomputed by the forward's expressions (only without a time input). */
static inline __attribute__((always_inline)) void
bwd_plain_body(long S, long B, const long W, long E, const float *dy, const float *y,
               const float *u, const float *bias, const float *emb, long emb_rows, float *db,
               float *dwe, float *dv)
{
    for (long s = 0; s < S; s++) {
        const float *bs = bias + s * W;
        float *dbs = db + s * W;
        float *dwes = E ? dwe + s * E * W : 0;
        memset(dbs, 0, W * sizeof(float));
        if (E) memset(dwes, 0, E * W * sizeof(float));
        for (long b = 0; b < B; b++) {
            const long r = s * B + b;
            const float *dyr = dy + r * W;
            float *dvr = dv + r * W;
            if (y) {
                const float *yr = y + r * W;
#pragma omp simd
                for (long j = 0; j < W; j++) {
                    const float x = yr[j] > 0.0f ? dyr[j] : 0.0f;
                    dvr[j] = x;
                    dbs[j] += x;
                }
            } else {
                const float *ur = u + r * W;
#pragma omp simd
                for (long j = 0; j < W; j++) {
                    const float x = ur[j] + bs[j] > 0.0f ? dyr[j] : 0.0f;
                    dvr[j] = x;
                    dbs[j] += x;
                }
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

/* The output layer, out = h W + b with few outputs (D <= MAXD): D dot products per row. */
static inline __attribute__((always_inline)) void
fwd_out_body(long S, long B, const long W, long D, const float *h, const float *w,
             const float *bias, float *out)
{
    float wt[MAXD * MAXW];
    for (long s = 0; s < S; s++) {
        const float *ws = w + s * W * D, *bs = bias + s * D;
        for (long j = 0; j < W; j++)
            for (long k = 0; k < D; k++) wt[k * W + j] = ws[j * D + k];
        for (long b = 0; b < B; b++) {
            const long r = s * B + b;
            const float *hr = h + r * W;
            for (long k = 0; k < D; k++) {
                const float *wk = wt + k * W;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (long j = 0; j < W; j++) acc += hr[j] * wk[j];
                out[r * D + k] = acc + bs[k];
            }
        }
    }
}

/* Its gradients from dout [S, B, D]: dh = dout W^T [S, B, W] and dw [S, W, D], db [S, D]
   (written). */
static inline __attribute__((always_inline)) void
bwd_out_body(long S, long B, const long W, long D, const float *dout, const float *h,
             const float *w, float *dh, float *dw, float *db)
{
    float wt[MAXD * MAXW], dwt[MAXD * MAXW];
    for (long s = 0; s < S; s++) {
        const float *ws = w + s * W * D;
        float *dbs = db + s * D;
        for (long j = 0; j < W; j++)
            for (long k = 0; k < D; k++) wt[k * W + j] = ws[j * D + k];
        memset(dwt, 0, D * W * sizeof(float));
        memset(dbs, 0, D * sizeof(float));
        for (long b = 0; b < B; b++) {
            const long r = s * B + b;
            const float *hr = h + r * W, *dr = dout + r * D;
            float *dhr = dh + r * W;
#pragma omp simd
            for (long j = 0; j < W; j++) dhr[j] = 0.0f;
            for (long k = 0; k < D; k++) {
                const float dk = dr[k];
                const float *wk = wt + k * W;
                float *gk = dwt + k * W;
                dbs[k] += dk;
#pragma omp simd
                for (long j = 0; j < W; j++) {
                    dhr[j] += dk * wk[j];
                    gk[j] += dk * hr[j];
                }
            }
        }
        float *dws = dw + s * W * D;
        for (long j = 0; j < W; j++)
            for (long k = 0; k < D; k++) dws[j * D + k] = dwt[k * W + j];
    }
}

/* The entry points: the default width 64 gets its own copy, compiled with a constant trip count
   (fully unrolled, no remainder loops); any other width runs the generic copy. */
void fwd_ln_relu(long S, long B, long W, long E, const float *u, const float *bias,
                 const float *emb, long emb_rows, const float *we, const float *g,
                 const float *beta, float *mean_save, float *rstd_save, const float *res_in,
                 float *res_out, float *out)
{
    if (W == 64)
        fwd_body(S, B, 64, E, u, bias, emb, emb_rows, we, g, beta, mean_save, rstd_save, res_in,
                 res_out, out);
    else
        fwd_body(S, B, W, E, u, bias, emb, emb_rows, we, g, beta, mean_save, rstd_save, res_in,
                 res_out, out);
}

void bwd_relu_ln(long S, long B, long W, long E, const float *dy, const float *u,
                 const float *bias, const float *emb, long emb_rows, const float *we,
                 const float *mean, const float *rstd, const float *g, const float *beta,
                 float *dg, float *dbeta, float *db, float *dwe, float *dv)
{
    if (W == 64)
        bwd_body(S, B, 64, E, dy, u, bias, emb, emb_rows, we, mean, rstd, g, beta, dg, dbeta, db,
                 dwe, dv);
    else
        bwd_body(S, B, W, E, dy, u, bias, emb, emb_rows, we, mean, rstd, g, beta, dg, dbeta, db,
                 dwe, dv);
}

void fwd_out(long S, long B, long W, long D, const float *h, const float *w, const float *bias,
             float *out)
{
    if (W == 64)
        fwd_out_body(S, B, 64, D, h, w, bias, out);
    else
        fwd_out_body(S, B, W, D, h, w, bias, out);
}

void bwd_out(long S, long B, long W, long D, const float *dout, const float *h, const float *w,
             float *dh, float *dw, float *db)
{
    if (W == 64)
        bwd_out_body(S, B, 64, D, dout, h, w, dh, dw, db);
    else
        bwd_out_body(S, B, W, D, dout, h, w, dh, dw, db);
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

void fwd_relu(long S, long B, long W, long E, const float *u, const float *bias,
              const float *emb, long emb_rows, const float *we, const float *res_in,
              float *res_out, float *out)
{
    if (W == 64)
        fwd_plain_body(S, B, 64, E, u, bias, emb, emb_rows, we, res_in, res_out, out);
    else
        fwd_plain_body(S, B, W, E, u, bias, emb, emb_rows, we, res_in, res_out, out);
}

void bwd_relu(long S, long B, long W, long E, const float *dy, const float *y, const float *u,
              const float *bias, const float *emb, long emb_rows, float *db, float *dwe,
              float *dv)
{
    if (W == 64)
        bwd_plain_body(S, B, 64, E, dy, y, u, bias, emb, emb_rows, db, dwe, dv);
    else
        bwd_plain_body(S, B, W, E, dy, y, u, bias, emb, emb_rows, db, dwe, dv);
}
