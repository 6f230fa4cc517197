/*
 * forward_tc.cu - the GPU path in tf32, fp16 and bf16 (tc.h): the node list of model.h with every
 * activation NHWC in the precision's storage type, the convolutions on the tensor cores
 * (conv2d_tc.cu), fp32 logits.
 *
 * What differs from the fp32 path (forward_cuda.cu), node by node:
 *   - the input is made NHWC with 8 channels (the stem reads 16-byte chunks; the 5 extra are 0);
 *   - every convolution's weights are packed once, at upload, for conv2d_tc_cuda (conv_tc's
 *     layout, rounded to the storage type; biases stay fp32); each gets its tile shape and K split
 *     for the plan's pixel count and the GPU's multiprocessors (conv2d_tc_choose);
 *   - the ASPP image-pooling branch is constant over the map, so it is not broadcast into the
 *     concatenation: avgpool -> its 1x1 conv (fp32 mat-vec, ReLU) -> times the projection's weights
 *     of those 256 channels (fp32 mat-vec) -> added to the projection's bias, per image. The
 *     projection then reads the other 1024 channels of the 1280-channel concatenation (whose last
 *     256 are never written);
 *   - the classifier writes fp32 logits NHWC at the feature size, and the final resize becomes
 *     tc_outputs_cuda: the resized logits, the class mass and the arg-max, whichever were asked for.
 * The values live in one arena laid out by the CPU planner's offsets (plan.c) scaled to the element
 * size, which keeps its non-overlap and 32-byte alignment.
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"
#include "cuda_state.h"
#include "status.h"

static size_t align16(size_t bytes) { return (bytes + 15) & ~(size_t)15; }

/* The node whose input is value v and whose op is op, from node `from` on, or -1. */
static int reader_of(const dl_model *m, int v, int from)
{
    for (int i = from; i < m->nnodes; i++)
        if (m->nodes[i].in == v) return i;
    return -1;
}

/* The average-pooling node (the image-pooling branch's first). */
static int reader_avg(const dl_model *m)
{
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].op == OP_AVGPOOL) return i;
    return 0;
}

/* Finds the image-pooling branch and the ends of the network (the roles of cuda_state.h). */
static dl_status assign_roles(const dl_model *m, tc_state *tc)
{
    int avg = -1;
    for (int i = 0; i < m->nnodes; i++) {
        tc->nodes[i].role = ROLE_PLAIN;
        if (m->nodes[i].op == OP_AVGPOOL) avg = i;
    }
    const int pool_conv = avg >= 0 ? reader_of(m, m->nodes[avg].out, avg + 1) : -1;
    const int fold = pool_conv >= 0 ? reader_of(m, m->nodes[pool_conv].out, pool_conv + 1) : -1;
    const int project = fold >= 0 ? reader_of(m, m->nodes[fold].out, fold + 1) : -1;
    if (pool_conv < 0 || fold < 0 || project < 0 || m->nodes[pool_conv].op != OP_CONV || m->nodes[fold].op != OP_RESIZE ||
        m->nodes[project].op != OP_CONV || m->nodes[pool_conv].conv.KH != 1 || m->nodes[project].conv.KH != 1 ||
        m->nodes[fold].out_c0 + m->nodes[pool_conv].conv.OC != m->nodes[project].conv.C)
        return dl_fail(DL_EINTERNAL, "tensor-core path: the ASPP image-pooling branch is not where it is expected");
    tc->nodes[pool_conv].role = ROLE_POOL_CONV;
    tc->nodes[fold].role = ROLE_POOL_FOLD;
    tc->nodes[project].role = ROLE_PROJECT;
    tc->pool_c = m->nodes[pool_conv].conv.C;
    tc->pool_oc = m->nodes[pool_conv].conv.OC;
    tc->fold_c0 = m->nodes[fold].out_c0;
    tc->project = project;
    const int last = m->nnodes - 1;
    if (m->nodes[last].op != OP_RESIZE || m->nodes[last].out != m->output || last < 1 ||
        m->nodes[last - 1].op != OP_CONV || m->nodes[last - 1].out != m->nodes[last].in)
        return dl_fail(DL_EINTERNAL, "tensor-core path: the network does not end with the classifier and a resize");
    tc->nodes[last - 1].role = ROLE_LOGITS;
    tc->nodes[last].role = ROLE_OUTPUTS;
    return DL_OK;
}

/* Packs and uploads every convolution's weights (host fp32 -> conv_tc's layout, rounded). */
dl_status dl_tc_init(dl_model *m, cuda_state *st)
{
    tc_state *tc = (tc_state *)calloc(1, sizeof *tc);
    if (!tc) return dl_fail(DL_ENOMEM, "out of memory starting the tensor-core path");
    st->tc = tc;
    tc->p = m->info.precision == DL_PRECISION_TF32 ? TC_TF32 : m->info.precision == DL_PRECISION_FP16 ? TC_FP16 : TC_BF16;
    tc->nodes = (tc_node *)calloc((size_t)m->nnodes, sizeof *tc->nodes);
    if (!tc->nodes) return dl_fail(DL_ENOMEM, "out of memory starting the tensor-core path");
    dl_status s = assign_roles(m, tc);
    if (s != DL_OK) return s;
    const size_t esz = tc_elem_bytes(tc->p);

    /* sizes: packed weights, fp32 biases, the pooled branch's fp32 weights, the fold's */
    size_t bytes = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const node *nd = &m->nodes[i];
        if (nd->op != OP_CONV) continue;
        const conv2d *c = &nd->conv;
        const int role = tc->nodes[i].role, take = role == ROLE_PROJECT ? tc->fold_c0 : c->C;
        if (role == ROLE_POOL_CONV) bytes += align16(4 * (size_t)c->OC * c->C);
        else bytes += align16(esz * c->OC * conv_tc_kp(take, c->KH, c->KW));
        bytes += align16(4 * (size_t)c->OC);
        if (role == ROLE_PROJECT) bytes += align16(4 * (size_t)c->OC * tc->pool_oc);
    }
    unsigned char *host = (unsigned char *)calloc(1, bytes ? bytes : 1);
    if (!host) return dl_fail(DL_ENOMEM, "out of memory packing the weights (%.0f MB)", (double)bytes / 1048576.0);
    const cudaError_t e = cudaMalloc((void **)&tc->d_params, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        free(host);
        tc->d_params = NULL;
        if (e == cudaErrorMemoryAllocation)
            return dl_fail(DL_ENOMEM, "out of GPU memory: the weights need %.0f MB", (double)bytes / 1048576.0);
        return dl_cuda_check_failed(e, "cudaMalloc(weights)", __FILE__, __LINE__);
    }
    tc->params_bytes = bytes;
    size_t at = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const node *nd = &m->nodes[i];
        if (nd->op != OP_CONV) continue;
        const conv2d *c = &nd->conv;
        tc_node *t = &tc->nodes[i];
        const int take = t->role == ROLE_PROJECT ? tc->fold_c0 : c->C;
        conv_tc *T = &t->conv;
        *T = (conv_tc){.C = take, .OC = c->OC, .KH = c->KH, .KW = c->KW, .p = c->p, .relu = c->relu,
                       .Cp = conv_tc_cp(take), .Kp = conv_tc_kp(take, c->KH, c->KW), .weight = NULL, .bias = NULL};
        if (t->role == ROLE_POOL_CONV) {
            memcpy(host + at, c->weight, 4 * (size_t)c->OC * c->C);
            tc->pool_w = (const float *)(tc->d_params + at);
            at += align16(4 * (size_t)c->OC * c->C);
        } else {
            conv2d_tc_pack(c, 0, take, tc->p, host + at);
            T->weight = tc->d_params + at;
            at += align16(esz * c->OC * T->Kp);
        }
        if (c->bias) memcpy(host + at, c->bias, 4 * (size_t)c->OC);
        T->bias = (const float *)(tc->d_params + at);
        if (t->role == ROLE_POOL_CONV) tc->pool_b = T->bias;
        at += align16(4 * (size_t)c->OC);
        if (t->role == ROLE_PROJECT) { /* W[oc][fold_c0 + j], j < pool_oc: OC x pool_oc */
            float *f = (float *)(host + at);
            for (int oc = 0; oc < c->OC; oc++)
                for (int j = 0; j < tc->pool_oc; j++) f[(size_t)oc * tc->pool_oc + j] = c->weight[(size_t)oc * c->C + tc->fold_c0 + j];
            tc->fold_w = (const float *)(tc->d_params + at);
            at += align16(4 * (size_t)c->OC * tc->pool_oc);
        }
    }
    s = DL_OK;
    const cudaError_t ce = cudaMemcpyAsync(tc->d_params, host, bytes, cudaMemcpyHostToDevice, st->stream);
    const cudaError_t se = ce == cudaSuccess ? cudaStreamSynchronize(st->stream) : ce; /* before host goes */
    free(host);
    if (se != cudaSuccess) s = dl_cuda_check_failed(se, "cudaMemcpyAsync(weights)", __FILE__, __LINE__);
    return s;
}

void dl_tc_free_plan(tc_state *tc)
{
    if (!tc) return;
    (void)cudaFree(tc->d_arena);
    (void)cudaFree(tc->d_in8);
    (void)cudaFree(tc->d_logits);
    (void)cudaFree(tc->d_pooled);
    (void)cudaFree(tc->d_pc);
    (void)cudaFree(tc->d_bias);
    (void)cudaFree(tc->d_ws);
    (void)cudaFree(tc->d_avg_ws);
    tc->d_avg_ws = NULL;
    tc->d_arena = NULL;
    tc->d_in8 = NULL;
    tc->d_logits = tc->d_pooled = tc->d_pc = tc->d_bias = tc->d_ws = NULL;
    tc->ws_floats = tc->arena_bytes = tc->plan_bytes = 0;
}

void dl_tc_free(tc_state *tc)
{
    if (!tc) return;
    dl_tc_free_plan(tc);
    (void)cudaFree(tc->d_params);
    free(tc->nodes);
    free(tc);
}

/* Value v as an NHWC tensor of the arena: channels [c0, c0 + c) of its pixels. */
static tc_tensor tview(const dl_model *m, const tc_state *tc, int v, int c0, int c)
{
    const value *val = &m->values[v];
    const size_t esz = tc_elem_bytes(tc->p);
    tc_tensor t = {tc->d_arena + (val->offset + (size_t)c0) * esz, m->plan_n, val->h, val->w, c, (size_t)val->c,
                   (size_t)val->h * val->w * val->c};
    return t;
}

/* Device memory and configurations for the plan (m->plan_n, h, w). */
dl_status dl_tc_plan(dl_model *m, cuda_state *st)
{
    tc_state *tc = st->tc;
    dl_tc_free_plan(tc);
    const size_t esz = tc_elem_bytes(tc->p), n = (size_t)m->plan_n;
    const int lv = m->nodes[m->nnodes - 2].out; /* the classifier's output value */
    size_t ws = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const node *nd = &m->nodes[i];
        tc_node *t = &tc->nodes[i];
        if (nd->op != OP_CONV || t->role == ROLE_POOL_CONV) continue;
        const value *out = &m->values[nd->out];
        const int P = (int)(n * out->h * out->w);
        t->cfg = conv2d_tc_choose(&t->conv, P, st->sms);
        const size_t w = conv2d_tc_workspace_floats(t->cfg, P, t->conv.OC);
        if (w > ws) ws = w;
        char name[40];
        conv2d_tc_name(t->cfg, tc->p, name, sizeof name);
        const char *how = t->conv.Cp % (64 / (int)esz) != 0 ? "im2col by chunk"
                          : t->conv.KH * t->conv.KW == 1 && t->conv.p.stride == 1 ? "gemm"
                                                                                  : "implicit gemm";
        snprintf(t->kernel, sizeof t->kernel, "%s, %s%s", name, how, t->role == ROLE_PROJECT ? ", pool folded" : "");
    }
    for (int i = 0; i < m->nnodes; i++) {
        tc_node *t = &tc->nodes[i];
        const node *nd = &m->nodes[i];
        if (t->role == ROLE_POOL_CONV) snprintf(t->kernel, sizeof t->kernel, "matvec fp32");
        else if (t->role == ROLE_POOL_FOLD) snprintf(t->kernel, sizeof t->kernel, "matvec fp32 (into the bias)");
        else if (t->role == ROLE_OUTPUTS) snprintf(t->kernel, sizeof t->kernel, "outputs (resize, mass, arg-max)");
        else if (nd->op == OP_MAXPOOL) snprintf(t->kernel, sizeof t->kernel, "maxpool nhwc %s", tc_precision_name(tc->p));
        else if (nd->op == OP_AVGPOOL) snprintf(t->kernel, sizeof t->kernel, "avgpool nhwc %s", tc_precision_name(tc->p));
    }
    const value *lg = &m->values[lv];
    const size_t arena = m->arena_floats * esz, in8 = n * m->plan_h * m->plan_w * 8 * esz;
    const size_t logits = 4 * n * lg->h * lg->w * lg->c;
    cudaError_t e = cudaMalloc((void **)&tc->d_arena, arena ? arena : 1);
    if (e == cudaSuccess) e = cudaMalloc(&tc->d_in8, in8);
    if (e == cudaSuccess) e = cudaMalloc((void **)&tc->d_logits, logits);
    if (e == cudaSuccess) e = cudaMalloc((void **)&tc->d_pooled, 4 * n * tc->pool_c);
    if (e == cudaSuccess) e = cudaMalloc((void **)&tc->d_pc, 4 * n * tc->pool_oc);
    const size_t proj_oc = (size_t)m->nodes[tc->project].conv.OC;
    const value *feat = &m->values[m->nodes[reader_avg(m)].in];
    const size_t avg_ws = global_avgpool_tc_workspace_floats(m->plan_n, feat->h, feat->w, feat->c);
    if (e == cudaSuccess) e = cudaMalloc((void **)&tc->d_avg_ws, 4 * avg_ws);
    if (e == cudaSuccess) e = cudaMalloc((void **)&tc->d_bias, 4 * n * proj_oc);
    if (e == cudaSuccess && ws) e = cudaMalloc((void **)&tc->d_ws, 4 * ws);
    if (e != cudaSuccess) {
        cudaGetLastError();
        dl_tc_free_plan(tc);
        return e == cudaErrorMemoryAllocation ? DL_ENOMEM : dl_cuda_check_failed(e, "cudaMalloc(activations)", __FILE__, __LINE__);
    }
    tc->ws_floats = ws;
    tc->arena_bytes = arena;
    tc->plan_bytes = arena + in8 + logits + 4 * n * (tc->pool_c + tc->pool_oc + proj_oc) + 4 * (ws + avg_ws);
    return DL_OK;
}

int dl_tc_input(const dl_model *m, const cuda_state *st)
{
    const tc_state *tc = st->tc;
    const tensor in = tensor_make(st->d_input, m->plan_n, 3, m->plan_h, m->plan_w);
    return nchw_to_tc_cuda(in, tc->p, tc_tensor_make(tc->d_in8, m->plan_n, m->plan_h, m->plan_w, 8), st->stream);
}

/* Node i on the stream; returns the launch's cudaError_t. */
int dl_tc_node(const dl_model *m, const cuda_state *st, int i, int outputs)
{
    const tc_state *tc = st->tc;
    const node *nd = &m->nodes[i];
    const tc_node *t = &tc->nodes[i];
    const value *vin = &m->values[nd->in], *vout = &m->values[nd->out];
    cudaStream_t s = st->stream;
    switch (t->role) {
    case ROLE_POOL_CONV: /* N x 2048 -> N x 256, + bias, ReLU */
        return matvec_f32_cuda(tc->pool_w, (size_t)tc->pool_c, tc->pool_b, tc->d_pooled, m->plan_n, tc->pool_c,
                               tc->pool_oc, 1, tc->d_pc, s);
    case ROLE_POOL_FOLD: { /* the projection's bias per image: b + W[:, pooled] . pc */
        const tc_node *p = &tc->nodes[tc->project];
        return matvec_f32_cuda(tc->fold_w, (size_t)tc->pool_oc, p->conv.bias, tc->d_pc, m->plan_n, tc->pool_oc,
                               p->conv.OC, 0, tc->d_bias, s);
    }
    case ROLE_OUTPUTS: {
        const tc_tensor lg = {tc->d_logits, m->plan_n, vin->h, vin->w, vin->c, (size_t)vin->c,
                              (size_t)vin->h * vin->w * vin->c};
        return tc_outputs_cuda(lg, m->plan_h, m->plan_w, outputs & OUT_LOGITS ? st->d_output : NULL,
                               outputs & OUT_MASS ? st->d_mass : NULL, st->d_keep,
                               outputs & OUT_LABELS ? st->d_labels : NULL, s);
    }
    default: break;
    }
    switch (nd->op) {
    case OP_CONV: {
        const conv_tc *L = &t->conv;
        tc_tensor in = i == 0 ? tc_tensor_make(tc->d_in8, m->plan_n, m->plan_h, m->plan_w, 8) : tview(m, tc, nd->in, 0, L->Cp);
        tc_tensor out, res;
        int f32 = 0;
        if (t->role == ROLE_LOGITS) {
            out = tc_tensor_make(tc->d_logits, m->plan_n, vout->h, vout->w, vout->c);
            f32 = 1;
        } else {
            out = tview(m, tc, nd->out, nd->out_c0, L->OC);
        }
        if (nd->res >= 0) res = tview(m, tc, nd->res, 0, L->OC);
        const float *bias = t->role == ROLE_PROJECT ? tc->d_bias : NULL;
        return conv2d_tc_cuda(L, tc->p, t->cfg, in, nd->res >= 0 ? &res : NULL, out, f32, bias,
                              t->role == ROLE_PROJECT ? (size_t)L->OC : 0, tc->d_ws, s);
    }
    case OP_MAXPOOL:
        return maxpool2d_tc_cuda(tc->p, tview(m, tc, nd->in, 0, vin->c), 3, 2, 1, tview(m, tc, nd->out, 0, vout->c), s);
    case OP_AVGPOOL:
        return global_avgpool_tc_cuda(tc->p, tview(m, tc, nd->in, 0, vin->c), tc->d_pooled, tc->d_avg_ws, s);
    case OP_RESIZE: /* no other resize in the network */
        break;
    }
    return (int)cudaErrorInvalidValue;
}
