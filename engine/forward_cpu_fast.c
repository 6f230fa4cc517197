/*
 * forward_cpu_fast.c - runs the node list on the CPU with the fast layers (layers_fast.h).
 *
 * The same graph and the same memory plan as the reference executor (forward_cpu.c): a value
 * holds as many floats in NHWC as in NCHW, so the planner's offsets serve both. Only the edges
 * change layout: the caller's NCHW input is copied to NHWC, and the logits are turned back to
 * NCHW before the final resize to the input size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "clock.h"
#include "layers_fast.h"
#include "model.h"
#include "status.h"
#include "threadpool.h"

/* Packing one convolution (a task of dl_fast_init's pool run): its status, and its message, which
 * dl_fail wrote on the worker's thread, copied for the caller's. */
typedef struct pack_job {
    dl_model *m;
    int bf16;
    dl_status *status;
    char (*why)[256];
} pack_job;

/* With bf16, these convolutions stay fp32:
 *  - the stem and layer1: on their few channels at 1/2 and 1/4 of the photo's size the bf16
 *    kernels are no faster (the same 25 ms at two threads), and rounding there costs the most
 *    accuracy, since every later layer amplifies it (rounding the stem's input alone gave over half
 *    of the logits' bf16 error on the test models; tests/test_parity_bf16.py);
 *  - the residual stream's projections (layerN.0.downsample) and ASPP's image-pooling branch
 *    (classifier.0.convs.4): what they compute reaches every later layer, or every pixel, whole,
 *    so the rounding of their weights is one error repeated everywhere rather than noise that
 *    later layers average away. On the trained-like test model (bench/bf16_weights_sim.py),
 *    rounding only the three projections' weights left 98.7% of rmbg's alpha within 2/255 of
 *    fp32's, rounding only every block's conv1, or conv2, or conv3 99.95-100%. Keeping them and
 *    the pooling branch in fp32 took rmbg's alpha from 98.74 to 99.12% (bench/bf16_alpha.py) for
 *    4.7% of the network's FLOPs, about 75 ms on one thread (bench/RESULTS.md). */
static int runs_bf16(const char *name)
{
    /* for experiments (bench/bf16_alpha.py): DEEPLAB_BF16_KEEP_FP32=prefix,prefix,... keeps the
     * convolutions whose names start with one of them in fp32 too */
    const char *keep = getenv("DEEPLAB_BF16_KEEP_FP32");
    for (const char *t = keep; t && *t;) {
        const size_t len = strcspn(t, ",");
        if (len > 0 && strncmp(name, t, len) == 0) return 0;
        t += len;
        if (*t == ',') t++;
    }
    return strcmp(name, "backbone.conv1") != 0 && strncmp(name, "backbone.layer1.", 16) != 0 &&
           strstr(name, ".downsample.") == NULL && strncmp(name, "classifier.0.convs.4.", 21) != 0;
}

static void pack_task(void *ctx, int i, int thread)
{
    (void)thread;
    const pack_job *J = ctx;
    node *nd = &J->m->nodes[i];
    if (nd->op != OP_CONV) return;
    const int bf16 = J->bf16 && runs_bf16(nd->name);
    const dl_status s = conv2d_pack_kernel(&nd->conv, conv2d_choose_kernel(&nd->conv, bf16), &J->m->packed[i]);
    J->status[i] = s;
    if (s != DL_OK) {
        snprintf(J->why[i], sizeof J->why[i], "%s", dl_last_error());
        return;
    }
    /* the packed copy is the one used from now on: free the reference layout */
    free((void *)nd->conv.weight);
    free((void *)nd->conv.bias);
    nd->conv.weight = nd->conv.bias = NULL;
}

/* Every convolution's weights packed for its kernel, the layers spread over the model's threads
 * (Winograd's transformed copies are most of a model's load time: 3.3 s of ResNet-101's 4.2 s on one
 * thread); each layer is packed as one thread would, so the result does not depend on the count. */
dl_status dl_fast_init(dl_model *m, int bf16)
{
    m->packed = calloc((size_t)m->nnodes, sizeof *m->packed);
    dl_status *status = calloc((size_t)m->nnodes, sizeof *status);
    char (*why)[256] = calloc((size_t)m->nnodes, sizeof *why);
    dl_status s = DL_OK;
    if (!m->packed || !status || !why) {
        s = dl_fail(DL_ENOMEM, "out of memory packing weights");
    } else {
        pack_job J = {.m = m, .bf16 = bf16, .status = status, .why = why};
        dl_pool_run(m->pool, m->nnodes, pack_task, &J);
        for (int i = 0; i < m->nnodes && s == DL_OK; i++)
            if (status[i] != DL_OK) s = dl_fail(status[i], "%s", why[i]);
    }
    free(status);
    free(why);
    return s;
}

/* The scratch of the largest convolution for the current plan (Winograd's grows with the map). */
static dl_status fast_scratch(dl_model *m)
{
    size_t need = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const node *nd = &m->nodes[i];
        if (nd->op != OP_CONV) continue;
        const value *in = &m->values[nd->in];
        const size_t s = conv2d_fast_scratch_floats(&m->packed[i], m->plan_n, in->h, in->w, dl_pool_threads(m->pool));
        if (s > need) need = s;
    }
    if (need <= m->fast_scratch_floats) return DL_OK;
    free(m->fast_scratch);
    m->fast_scratch = dl_alloc_aligned(need * sizeof(float), "convolution scratch");
    m->fast_scratch_floats = m->fast_scratch ? need : 0;
    return m->fast_scratch ? DL_OK : DL_ENOMEM;
}

void dl_fast_free(dl_model *m)
{
    if (m->packed)
        for (int i = 0; i < m->nnodes; i++) conv2d_packed_free(&m->packed[i]);
    free(m->packed);
    free(m->fast_scratch);
    free(m->fast_io);
    m->packed = NULL;
    m->fast_scratch = m->fast_io = NULL;
}

/* Channels [c0, c0 + c) of value v as NHWC. */
static nhwc view(const value *v, int n, int c0, int c)
{
    nhwc t = {v->data + c0, n, v->h, v->w, c, (size_t)v->c, (size_t)v->c * v->h * v->w};
    return t;
}

dl_status dl_forward_cpu_fast(dl_model *m, const float *input, float *logits)
{
    const int n = m->plan_n;
    value *in = &m->values[VALUE_INPUT];
    const node *last = &m->nodes[m->nnodes - 1]; /* the resize of the logits to the input size */
    const value *small = &m->values[last->in];
    const size_t in_floats = (size_t)n * 3 * in->h * in->w;
    const size_t need = in_floats + (size_t)n * small->c * small->h * small->w;
    if (need > m->fast_io_floats) {
        free(m->fast_io);
        m->fast_io = dl_alloc_aligned(need * sizeof(float), "input and logits");
        m->fast_io_floats = m->fast_io ? need : 0;
        if (!m->fast_io) return DL_ENOMEM;
    }
    if (fast_scratch(m) != DL_OK) return DL_ENOMEM;
    for (int i = 0; i < m->nvalues; i++) m->values[i].data = m->arena + m->values[i].offset;
    in->data = m->fast_io;
    nchw_to_nhwc(tensor_make((float *)input, n, 3, in->h, in->w), view(in, n, 0, 3));

    for (int i = 0; i < m->nnodes; i++) {
        const node *nd = &m->nodes[i];
        const double t0 = m->profile ? dl_now() : 0.0;
        const value *vin = &m->values[nd->in], *vout = &m->values[nd->out];
        const nhwc x = view(vin, n, 0, vin->c);
        switch (nd->op) {
        case OP_CONV: {
            nhwc res;
            if (nd->res >= 0) res = view(&m->values[nd->res], n, 0, nd->conv.OC);
            conv2d_fast(&m->packed[i], x, nd->res >= 0 ? &res : NULL, view(vout, n, nd->out_c0, nd->conv.OC),
                        m->fast_scratch, m->pool);
            break;
        }
        case OP_MAXPOOL:
            maxpool2d_nhwc(x, 3, 2, 1, view(vout, n, 0, vout->c), m->pool);
            break;
        case OP_AVGPOOL:
            global_avgpool_nhwc(x, view(vout, n, 0, vout->c), m->pool);
            break;
        case OP_RESIZE:
            if (nd->out == m->output) { /* back to NCHW, then the reference resize into the caller's buffer */
                tensor t = tensor_make(m->fast_io + in_floats, n, vin->c, vin->h, vin->w);
                nhwc_to_nchw(x, t);
                resize_bilinear_cpu(t, tensor_make(logits, n, vout->c, vout->h, vout->w), m->pool);
            } else {
                resize_bilinear_nhwc(x, view(vout, n, nd->out_c0, vin->c), m->pool);
            }
            break;
        }
        if (m->profile) m->node_seconds[i] = dl_now() - t0;
    }
    return DL_OK;
}
