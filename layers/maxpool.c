/* maxpool.c - max pooling over k x k windows (the stem's 3x3, stride 2, padding 1). */
#include <math.h>

#include "layers.h"

typedef struct pool_job {
    tensor in, out;
    int k, stride, pad;
} pool_job;

static void maxpool_plane(void *ctx, int task, int thread)
{
    (void)thread;
    const pool_job *J = ctx;
    const int n = task / J->in.c, c = task % J->in.c;
    const float *x = J->in.data + n * J->in.ldn + (size_t)c * J->in.h * J->in.w;
    float *y = J->out.data + n * J->out.ldn + (size_t)c * J->out.h * J->out.w;
    for (int oy = 0; oy < J->out.h; oy++)
        for (int ox = 0; ox < J->out.w; ox++) {
            float m = -INFINITY; /* padding never wins */
            for (int ky = 0; ky < J->k; ky++) {
                const int iy = oy * J->stride - J->pad + ky;
                if (iy < 0 || iy >= J->in.h) continue;
                for (int kx = 0; kx < J->k; kx++) {
                    const int ix = ox * J->stride - J->pad + kx;
                    if (ix < 0 || ix >= J->in.w) continue;
                    const float v = x[(size_t)iy * J->in.w + ix];
                    if (v > m || isnan(v)) m = v; /* NaN propagates, as in PyTorch */
                }
            }
            y[(size_t)oy * J->out.w + ox] = m;
        }
}

void maxpool2d_cpu(tensor in, int k, int stride, int pad, tensor out, dl_pool *pool)
{
    pool_job J = {in, out, k, stride, pad};
    dl_pool_run(pool, in.n * in.c, maxpool_plane, &J);
}
