/*
 * model.c - builds DeepLabV3 from a safetensors file with torchvision's tensor names.
 *
 * The network is written down here in C, block by block, in the order torchvision runs it:
 *
 *   backbone.conv1 7x7/2 -> bn1 -> relu -> maxpool 3x3/2
 *   backbone.layer1..4: Bottleneck blocks (1x1 -> 3x3 -> 1x1, x4 channels, residual add)
 *       layer1  64 planes, stride 1        layer3 256 planes, dilation 2 (block 0: 1)
 *       layer2 128 planes, stride 2        layer4 512 planes, dilation 4 (block 0: 2)
 *   classifier.0 (ASPP): five 256-channel branches on the 2048-channel map, concatenated:
 *       1x1 conv | 3x3 dilation 12 | 3x3 dilation 24 | 3x3 dilation 36 | global pool -> 1x1 -> broadcast
 *     then project 1x1 1280 -> 256
 *   classifier.1-3: 3x3 conv 256 -> 256, BN, ReLU;  classifier.4: 1x1 conv 256 -> classes (+ bias)
 *   bilinear resize of the logits to the input size.
 *
 * The number of blocks per layer comes from the file (ResNet-50: 3,4,6,3; ResNet-101: 3,4,23,3)
 * and the class count from classifier.4.weight. Every tensor is looked up by name and its shape
 * checked; all problems are collected and reported in one error. BatchNorm is folded into the
 * convolution before it as the weights are read.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "cuda_backend.h"
#include "cuda_device.h"
#include "layers_fast.h"
#include "model.h"
#include "status.h"
#include "weights.h"

static const float BN_EPS = 1e-5f;

typedef struct loader {
    dl_model *m;
    dl_st_file *st;      /* tensors come from this file, or ... */
    uint64_t random;     /* ... when st is NULL, from this random stream (see random_tensor) */
    char problems[900];
    int nproblems;
    int dtypes_seen; /* bit mask of dl_dtype */
    int oom;
} loader;

static void problem(loader *ld, const char *fmt, ...) DL_PRINTF(2, 3);
static void problem(loader *ld, const char *fmt, ...)
{
    char item[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item, sizeof item, fmt, ap);
    va_end(ap);
    size_t len = strlen(ld->problems);
    const char *sep = ld->nproblems++ > 0 ? "; " : "";
    if (len + strlen(sep) + strlen(item) + 8 < sizeof ld->problems)
        snprintf(ld->problems + len, sizeof ld->problems - len, "%s%s", sep, item);
    else if (!strstr(ld->problems, "; ...")) /* the count in the message says how many */
        snprintf(ld->problems + len, sizeof ld->problems - len, "; ...");
}

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < len) snprintf(buf + k, len - k, "]");
}

/* Random weights of the right shapes (benchmarks without a weights file): convolutions uniform
 * with He's variance 2 / fan_in, BatchNorm the identity except a 0.2 gamma on each block's last
 * BN (as trained ResNets have, which keeps the activations in range through 33 blocks). */
static void random_tensor(loader *ld, const char *name, int ndim, const int64_t *shape, float *dst)
{
    int64_t n = 1, fan_in = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    for (int i = 1; i < ndim; i++) fan_in *= shape[i];
    const size_t len = strlen(name);
#define ENDS(s) (len >= strlen(s) && !strcmp(name + len - strlen(s), s))
    float fill = 0.0f;
    if (ndim == 4) {
        const float a = sqrtf(6.0f / (float)fan_in); /* uniform(-a, a) has variance 2 / fan_in */
        for (int64_t i = 0; i < n; i++) {
            ld->random ^= ld->random << 13;
            ld->random ^= ld->random >> 7;
            ld->random ^= ld->random << 17;
            dst[i] = a * (float)((double)(ld->random >> 11) / 4503599627370496.0 - 1.0);
        }
        return;
    }
    if (ENDS(".running_var")) fill = 1.0f;
    else if (ENDS(".weight")) fill = strstr(name, ".bn3.") ? 0.2f : 1.0f; /* BN gamma */
#undef ENDS
    for (int64_t i = 0; i < n; i++) dst[i] = fill;
}

/* Reads tensor `name` as float32 into dst after checking its shape. 0 on success. */
static int read_tensor(loader *ld, const char *name, int ndim, const int64_t *shape, float *dst)
{
    if (!ld->st) {
        if (dst) random_tensor(ld, name, ndim, shape, dst);
        int64_t n = 1;
        for (int i = 0; i < ndim; i++) n *= shape[i];
        ld->m->info.num_params += n;
        ld->dtypes_seen |= 1 << DL_F32;
        return 0;
    }
    const dl_tensor_ref *t = dl_st_find(ld->st, name);
    if (!t) {
        problem(ld, "missing %s", name);
        return -1;
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char got[96], want[96];
        shape_str(got, sizeof got, t->ndim, t->shape);
        shape_str(want, sizeof want, ndim, shape);
        problem(ld, "%s has shape %s, expected %s", name, got, want);
        return -1;
    }
    if (!dst) return 0;
    if (dl_tensor_to_f32(t, dst) != 0) {
        problem(ld, "%s has dtype %s, expected F32, F16 or BF16", name, dl_dtype_name(t->dtype));
        return -1;
    }
    ld->dtypes_seen |= 1 << t->dtype;
    ld->m->info.num_params += dl_tensor_numel(t);
    return 0;
}

static int new_value(dl_model *m, int channels)
{
    if (m->nvalues == m->values_cap) {
        int cap = m->values_cap ? 2 * m->values_cap : 64;
        value *v = realloc(m->values, sizeof *v * (size_t)cap);
        if (!v) return -1;
        m->values = v;
        m->values_cap = cap;
    }
    value *v = &m->values[m->nvalues];
    memset(v, 0, sizeof *v);
    v->c = channels;
    return m->nvalues++;
}

static node *new_node(loader *ld, op_kind op, const char *name, int in, int out)
{
    dl_model *m = ld->m;
    if (in < 0 || out < 0) {
        ld->oom = 1;
        return NULL;
    }
    if (m->nnodes == m->nodes_cap) {
        int cap = m->nodes_cap ? 2 * m->nodes_cap : 64;
        node *n = realloc(m->nodes, sizeof *n * (size_t)cap);
        if (!n) {
            ld->oom = 1;
            return NULL;
        }
        m->nodes = n;
        m->nodes_cap = cap;
    }
    node *n = &m->nodes[m->nnodes++];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    n->op = op;
    n->in = in;
    n->out = out;
    n->res = -1;
    return n;
}

typedef struct conv_spec {
    const char *name;    /* module name (node name); weight key = name + ".weight" */
    const char *bn;      /* BatchNorm module folded in, or NULL */
    int C, OC, k, stride, dilation, relu;
    int has_bias;        /* the conv has its own bias tensor (only classifier.4) */
    int in, out;         /* value ids: it reads in and writes channels [out_c0, out_c0 + OC) of out */
    int out_c0;
    int res;             /* value added before the ReLU, or 0 for none (value 0, the network input,
                            is never a residual) */
} conv_spec;

/* Adds the convolution node s describes. */
static node *add_conv(loader *ld, const conv_spec *s)
{
    node *n = new_node(ld, OP_CONV, s->name, s->in, s->out);
    if (!n) return NULL;
    n->res = s->res ? s->res : -1;
    n->out_c0 = s->out_c0;
    conv2d *c = &n->conv;
    c->C = s->C;
    c->OC = s->OC;
    c->KH = c->KW = s->k;
    c->p.stride = s->stride;
    c->p.dilation = s->dilation;
    c->p.pad = s->k / 2 * s->dilation; /* "same" padding: 3 for the 7x7 stem, dilation for 3x3 */
    c->relu = s->relu;

    const size_t per_oc = (size_t)s->C * s->k * s->k;
    float *w = malloc(sizeof(float) * per_oc * (size_t)s->OC);
    float *b = calloc((size_t)s->OC, sizeof(float));
    float *bn = malloc(sizeof(float) * 4 * (size_t)s->OC); /* gamma, beta, mean, var */
    c->weight = w;
    c->bias = b;
    if (!w || !b || !bn) {
        free(bn);
        ld->oom = 1;
        return n;
    }
    char key[128];
    snprintf(key, sizeof key, "%s.weight", s->name);
    int64_t wshape[4] = {s->OC, s->C, s->k, s->k}, vshape[1] = {s->OC};
    int ok = read_tensor(ld, key, 4, wshape, w) == 0;
    if (s->has_bias) {
        snprintf(key, sizeof key, "%s.bias", s->name);
        ok &= read_tensor(ld, key, 1, vshape, b) == 0;
    }
    if (s->bn) {
        static const char *fields[4] = {"weight", "bias", "running_mean", "running_var"};
        for (int i = 0; i < 4; i++) {
            snprintf(key, sizeof key, "%s.%s", s->bn, fields[i]);
            /* running statistics are buffers, not parameters: keep them out of the count */
            int64_t before = ld->m->info.num_params;
            ok &= read_tensor(ld, key, 1, vshape, bn + (size_t)i * s->OC) == 0;
            if (i >= 2) ld->m->info.num_params = before;
        }
        if (ok)
            batchnorm_fold(w, b, s->OC, per_oc, bn, bn + s->OC, bn + 2 * (size_t)s->OC,
                           bn + 3 * (size_t)s->OC, BN_EPS);
    }
    free(bn);
    return n;
}

static int count_blocks(loader *ld, int layer)
{
    char key[96];
    int b = 0;
    for (;; b++) {
        snprintf(key, sizeof key, "backbone.layer%d.%d.conv1.weight", layer, b);
        if (!dl_st_find(ld->st, key)) return b;
    }
}

/* backbone: the stem and the four ResNet layers. Returns the value holding layer4's output. */
static int build_backbone(loader *ld, const int blocks[4])
{
    dl_model *m = ld->m;
    int t = new_value(m, 64), x = new_value(m, 64);
    add_conv(ld, &(conv_spec){.name = "backbone.conv1", .bn = "backbone.bn1", .C = 3, .OC = 64, .k = 7, .stride = 2,
                              .dilation = 1, .relu = 1, .in = VALUE_INPUT, .out = t});
    new_node(ld, OP_MAXPOOL, "backbone.maxpool", t, x);

    int inplanes = 64, dilation = 1;
    for (int L = 1; L <= 4; L++) {
        const int planes = 64 << (L - 1);
        /* torchvision's replace_stride_with_dilation=[False, True, True]: layers 3 and 4 keep
         * the resolution and double the dilation instead; their block 0 uses the old one. */
        const int dilate = L >= 3, prev_dilation = dilation;
        int stride = L == 1 ? 1 : 2;
        if (dilate) {
            dilation *= stride;
            stride = 1;
        }
        for (int b = 0; b < blocks[L - 1]; b++) {
            const int s = b == 0 ? stride : 1, d = b == 0 ? prev_dilation : dilation;
            char pre[48], n1[64], n2[64], n3[64], b1[64], b2[64], b3[64];
            snprintf(pre, sizeof pre, "backbone.layer%d.%d", L, b);
            snprintf(n1, sizeof n1, "%s.conv1", pre);
            snprintf(n2, sizeof n2, "%s.conv2", pre);
            snprintf(n3, sizeof n3, "%s.conv3", pre);
            snprintf(b1, sizeof b1, "%s.bn1", pre);
            snprintf(b2, sizeof b2, "%s.bn2", pre);
            snprintf(b3, sizeof b3, "%s.bn3", pre);
            int t1 = new_value(m, planes), t2 = new_value(m, planes), y = new_value(m, planes * 4);
            add_conv(ld, &(conv_spec){.name = n1, .bn = b1, .C = inplanes, .OC = planes, .k = 1, .stride = 1,
                                      .dilation = 1, .relu = 1, .in = x, .out = t1});
            add_conv(ld, &(conv_spec){.name = n2, .bn = b2, .C = planes, .OC = planes, .k = 3, .stride = s,
                                      .dilation = d, .relu = 1, .in = t1, .out = t2});
            int shortcut = x;
            if (s != 1 || inplanes != planes * 4) {
                char nd[64], bd[64];
                snprintf(nd, sizeof nd, "%s.downsample.0", pre);
                snprintf(bd, sizeof bd, "%s.downsample.1", pre);
                shortcut = new_value(m, planes * 4);
                add_conv(ld, &(conv_spec){.name = nd, .bn = bd, .C = inplanes, .OC = planes * 4, .k = 1, .stride = s,
                                          .dilation = 1, .relu = 0, .in = x, .out = shortcut});
            }
            /* conv3 + bn3, plus the shortcut, then ReLU: one fused node */
            add_conv(ld, &(conv_spec){.name = n3, .bn = b3, .C = planes, .OC = planes * 4, .k = 1, .stride = 1,
                                      .dilation = 1, .relu = 1, .in = t2, .out = y, .res = shortcut});
            x = y;
            inplanes = planes * 4;
        }
    }
    return x;
}

/* classifier: DeepLabHead. Returns the value holding the logits at feature resolution. */
static int build_head(loader *ld, int feat, int classes)
{
    dl_model *m = ld->m;
    static const int rates[3] = {12, 24, 36};
    int cat = new_value(m, 5 * 256);
    add_conv(ld, &(conv_spec){.name = "classifier.0.convs.0.0", .bn = "classifier.0.convs.0.1", .C = 2048, .OC = 256,
                              .k = 1, .stride = 1, .dilation = 1, .relu = 1, .in = feat, .out = cat});
    for (int i = 1; i <= 3; i++) {
        char name[64], bn[64];
        snprintf(name, sizeof name, "classifier.0.convs.%d.0", i);
        snprintf(bn, sizeof bn, "classifier.0.convs.%d.1", i);
        add_conv(ld, &(conv_spec){.name = name, .bn = bn, .C = 2048, .OC = 256, .k = 3, .stride = 1,
                                  .dilation = rates[i - 1], .relu = 1, .in = feat, .out = cat, .out_c0 = 256 * i});
    }
    /* Image pooling: mean over the map -> 1x1 conv -> BN -> ReLU -> bilinear back to the map
     * size, which from a 1x1 source is a broadcast. */
    int pooled = new_value(m, 2048), pc = new_value(m, 256);
    new_node(ld, OP_AVGPOOL, "classifier.0.convs.4.0", feat, pooled);
    add_conv(ld, &(conv_spec){.name = "classifier.0.convs.4.1", .bn = "classifier.0.convs.4.2", .C = 2048, .OC = 256,
                              .k = 1, .stride = 1, .dilation = 1, .relu = 1, .in = pooled, .out = pc});
    node *up = new_node(ld, OP_RESIZE, "classifier.0.convs.4.upsample", pc, cat);
    if (up) {
        up->out_c0 = 4 * 256;
        up->size_of = feat;
    }
    int proj = new_value(m, 256), h = new_value(m, 256), logits = new_value(m, classes);
    add_conv(ld, &(conv_spec){.name = "classifier.0.project.0", .bn = "classifier.0.project.1", .C = 1280, .OC = 256,
                              .k = 1, .stride = 1, .dilation = 1, .relu = 1, .in = cat, .out = proj});
    /* (classifier.0.project.3 is Dropout: the identity at inference) */
    add_conv(ld, &(conv_spec){.name = "classifier.1", .bn = "classifier.2", .C = 256, .OC = 256, .k = 3, .stride = 1,
                              .dilation = 1, .relu = 1, .in = proj, .out = h});
    add_conv(ld, &(conv_spec){.name = "classifier.4", .bn = NULL, .C = 256, .OC = classes, .k = 1, .stride = 1,
                              .dilation = 1, .relu = 0, .has_bias = 1, .in = h, .out = logits});
    return logits;
}

static void model_free_graph(dl_model *m)
{
    for (int i = 0; i < m->nnodes; i++) {
        free((void *)m->nodes[i].conv.weight);
        free((void *)m->nodes[i].conv.bias);
    }
    free(m->nodes);
    free(m->values);
    m->nodes = NULL;
    m->values = NULL;
    m->nnodes = m->nvalues = 0;
}

void dl_model_free(dl_model *m)
{
    if (!m) return;
    if (m->cuda) dl_cuda_free(m);
    dl_fast_free(m);
    dl_plan_free(m);
    model_free_graph(m);
    dl_pool_free(m->pool);
    free(m->node_seconds);
    free(m->path);
    free(m);
}

int dl_cpu_has_bf16(void) { return conv2d_bf16_available(); }

double dl_cpu_peak_gflops(dl_precision precision) { return conv2d_peak_gflops(precision == DL_PRECISION_BF16); }

/* CUDA when asked for (and an error if there is no usable GPU: never a silent fallback), or
 * for AUTO when a GPU is there; else the CPU. The cudnn backend exists on the GPU only: with AUTO
 * it asks for CUDA. */
static dl_status choose_device(const dl_options *opt, dl_device *dev)
{
    char why[256] = "";
    dl_device want = opt ? opt->device : DL_DEVICE_AUTO;
    const dl_backend backend = opt ? opt->backend : DL_BACKEND_NATIVE;
    const dl_precision precision = opt ? opt->precision : DL_PRECISION_FP32;
    const int reference = opt && opt->reference;
    if (backend != DL_BACKEND_NATIVE && backend != DL_BACKEND_CUDNN)
        return dl_fail(DL_EUSAGE, "unknown backend %d: expected native or cudnn", (int)backend);
    static const char *const pnames[] = {"fp32", "tf32", "fp16", "bf16"};
    if ((unsigned)precision > DL_PRECISION_BF16)
        return dl_fail(DL_EUSAGE, "unknown precision %d: expected fp32, tf32, fp16 or bf16", (int)precision);
    /* bf16 on the CPU: its fast path on a CPU with AVX512_BF16 */
    const int cpu_bf16 = precision == DL_PRECISION_BF16 && backend == DL_BACKEND_NATIVE && !reference;
    if (cpu_bf16 && want == DL_DEVICE_CPU) {
        if (!conv2d_bf16_available())
            return dl_fail(DL_EUNAVAILABLE, "precision bf16 needs a CPU with AVX512_BF16 (and the avx512 kernels), "
                                            "and this one runs %s without it: use --precision fp32", conv2d_fast_isa());
        *dev = DL_DEVICE_CPU;
        return DL_OK;
    }
    if (backend == DL_BACKEND_CUDNN) {
        if (want == DL_DEVICE_CPU || reference)
            return dl_fail(DL_EUSAGE, "the cudnn backend runs on the GPU only, not with %s",
                           want == DL_DEVICE_CPU ? "--device cpu" : "--reference");
        if (precision != DL_PRECISION_FP32 && precision != DL_PRECISION_TF32)
            return dl_fail(DL_EUSAGE, "the cudnn backend computes in fp32 or tf32, not %s (the native backend "
                                      "runs %s on the GPU)", pnames[precision], pnames[precision]);
        want = DL_DEVICE_CUDA;
    } else if (precision != DL_PRECISION_FP32 && !cpu_bf16) {
        /* tf32 and fp16 are the GPU's tensor-core path: with AUTO they mean the GPU */
        if (want == DL_DEVICE_CPU || reference)
            return dl_fail(DL_EUSAGE, "precision %s runs on the GPU only (tensor cores), not with %s: use --precision "
                                      "fp32%s on the CPU", pnames[precision], want == DL_DEVICE_CPU ? "--device cpu" : "--reference",
                           reference ? "" : " or bf16");
        want = DL_DEVICE_CUDA;
    }
    /* the emulated GPU only when asked for by name (cuda_device.h) */
    const int gpus = want == DL_DEVICE_CPU || (want == DL_DEVICE_AUTO && dl_cuda_emulated())
                         ? 0
                         : dl_cuda_probe(why, sizeof why);
    if (cpu_bf16 && want == DL_DEVICE_AUTO && gpus == 0) {
        /* bf16 with AUTO: the GPU's tensor cores when there is one, else the CPU's vdpbf16ps */
        if (!conv2d_bf16_available())
            return dl_fail(DL_EUNAVAILABLE, "precision bf16 needs a CUDA GPU (%s) or a CPU with AVX512_BF16 (this one "
                                            "runs %s without it): use --precision fp32", why[0] ? why : "none usable",
                           conv2d_fast_isa());
        *dev = DL_DEVICE_CPU;
        return DL_OK;
    }
    if (want == DL_DEVICE_CUDA && gpus == 0) {
        if (precision != DL_PRECISION_FP32 && backend == DL_BACKEND_NATIVE)
            return dl_fail(DL_EUNAVAILABLE, "no usable CUDA GPU for precision %s: %s", pnames[precision], why);
        return dl_fail(DL_EUNAVAILABLE, "no usable CUDA GPU for %s: %s",
                       backend == DL_BACKEND_CUDNN ? "the cudnn backend" : "--device cuda", why);
    }
    *dev = gpus > 0 ? DL_DEVICE_CUDA : DL_DEVICE_CPU;
    return DL_OK;
}

static const char *dtype_summary(int seen)
{
    if (seen == 1 << DL_F32) return "F32";
    if (seen == 1 << DL_F16) return "F16";
    if (seen == 1 << DL_BF16) return "BF16";
    return "mixed";
}

/* Builds the graph from ld's tensor source, then prepares the chosen device. */
static dl_status build_model(loader *ld, const char *label, const int blocks[4], int classes,
                             dl_device device, const dl_options *opt, dl_model **out)
{
    dl_model *m = ld->m;
    dl_status s = DL_OK;
    m->info.device = device;
    new_value(m, 3); /* VALUE_INPUT */
    m->values[VALUE_INPUT].external = 1;
    int feat = build_backbone(ld, blocks);
    int logits = build_head(ld, feat, classes);
    m->output = new_value(m, classes);
    node *up = new_node(ld, OP_RESIZE, "upsample", logits, m->output);
    if (up) up->size_of = VALUE_INPUT;

    if (ld->oom || m->output < 0) {
        dl_model_free(m);
        return dl_fail(DL_ENOMEM, "%s: out of memory building the network", label);
    }
    if (ld->nproblems > 0) {
        dl_model_free(m);
        return dl_fail(DL_EDATA, "%s: %d problem%s with the weights: %s", label, ld->nproblems,
                       ld->nproblems > 1 ? "s" : "", ld->problems);
    }
    m->values[m->output].external = 1;
    m->info.depth = 3 * (blocks[0] + blocks[1] + blocks[2] + blocks[3]) + 2;
    m->info.num_classes = classes;
    m->info.dtype = dtype_summary(ld->dtypes_seen);
    m->pool = dl_pool_create(opt ? opt->threads : 0);
    if (!m->pool) {
        dl_model_free(m);
        return dl_fail(DL_ENOMEM, "out of memory starting threads");
    }
    m->info.threads = dl_pool_threads(m->pool);
    if (device == DL_DEVICE_CUDA) {
        m->info.backend = opt ? opt->backend : DL_BACKEND_NATIVE; /* dl_cuda_init reads them */
        m->info.precision = opt ? opt->precision : DL_PRECISION_FP32;
        s = dl_cuda_init(m);
        m->info.path = m->info.backend == DL_BACKEND_CUDNN ? "cudnn" : "cuda";
    } else if (opt && opt->reference) {
        m->info.path = "reference";
    } else {
        const int bf16 = opt && opt->precision == DL_PRECISION_BF16;
        m->info.precision = bf16 ? DL_PRECISION_BF16 : DL_PRECISION_FP32;
        s = dl_fast_init(m, bf16);
        m->info.path = bf16 ? "avx512-bf16" : conv2d_fast_isa();
    }
    if (s != DL_OK) {
        dl_model_free(m);
        return s;
    }
    *out = m;
    return DL_OK;
}

static dl_model *new_model(const char *label)
{
    dl_model *m = calloc(1, sizeof *m);
    if (m && !(m->path = strdup(label))) {
        free(m);
        m = NULL;
    }
    if (!m) dl_fail(DL_ENOMEM, "%s: out of memory", label);
    return m;
}

dl_status dl_model_load(const char *path, const dl_options *opt, dl_model **out)
{
    *out = NULL;
    dl_device device = DL_DEVICE_CPU;
    dl_status s = choose_device(opt, &device);
    if (s != DL_OK) return s;

    loader ld = {0};
    s = dl_st_open(path, &ld.st);
    if (s != DL_OK) return s;
    if (!(ld.m = new_model(path))) {
        dl_st_close(ld.st);
        return DL_ENOMEM;
    }
    const dl_tensor_ref *cls = dl_st_find(ld.st, "classifier.4.weight");
    if (!dl_st_find(ld.st, "backbone.conv1.weight") || !cls) {
        dl_st_close(ld.st);
        dl_model_free(ld.m);
        return dl_fail(DL_EDATA, "%s: not DeepLabV3 weights: no backbone.conv1.weight or "
                                 "classifier.4.weight (expected torchvision's deeplabv3_resnet50/101 names)",
                       path);
    }
    int classes = cls->ndim == 4 ? (int)cls->shape[0] : 0;
    if (classes < 1 || classes > 256) {
        problem(&ld, "classifier.4.weight must be [classes, 256, 1, 1] with 1..256 classes");
        classes = 1;
    }
    int blocks[4];
    for (int L = 1; L <= 4; L++) {
        blocks[L - 1] = count_blocks(&ld, L);
        if (blocks[L - 1] == 0) problem(&ld, "missing backbone.layer%d.0.conv1.weight", L);
    }
    s = build_model(&ld, path, blocks, classes, device, opt, out);
    dl_st_close(ld.st);
    return s;
}

dl_status dl_model_random(int depth, int classes, uint64_t seed, const dl_options *opt, dl_model **out)
{
    *out = NULL;
    if (depth != 50 && depth != 101)
        return dl_fail(DL_EUSAGE, "random model of depth %d: expected 50 or 101", depth);
    if (classes < 1 || classes > 256)
        return dl_fail(DL_EUSAGE, "random model with %d classes: expected 1 to 256", classes);
    dl_device device = DL_DEVICE_CPU;
    dl_status s = choose_device(opt, &device);
    if (s != DL_OK) return s;
    loader ld = {.random = seed * 0x9e3779b97f4a7c15ull + 1};
    if (!(ld.m = new_model("random weights"))) return DL_ENOMEM;
    const int blocks[4] = {3, 4, depth == 50 ? 6 : 23, 3};
    return build_model(&ld, "random weights", blocks, classes, device, opt, out);
}

dl_model_info dl_model_info_of(const dl_model *m) { return m->info; }

void dl_model_set_profile(dl_model *m, int on)
{
    if (on && !m->node_seconds) m->node_seconds = calloc((size_t)m->nnodes, sizeof(double));
    m->profile = on && m->node_seconds;
}

int dl_model_layer_count(const dl_model *m) { return m->nnodes; }

dl_layer_info dl_model_layer(const dl_model *m, int i)
{
    static const char *const ops[] = {"conv", "maxpool", "avgpool", "resize"};
    const node *nd = &m->nodes[i];
    const value *in = &m->values[nd->in], *out = &m->values[nd->out];
    const double n = m->plan_n;
    dl_layer_info L = {.name = nd->name, .op = ops[nd->op], .in_c = in->c, .in_h = in->h, .in_w = in->w,
                       .out_c = nd->op == OP_CONV ? nd->conv.OC : nd->op == OP_RESIZE ? in->c : out->c,
                       .out_h = out->h, .out_w = out->w};
    const double in_n = (double)in->c * in->h * in->w, out_n = (double)L.out_c * out->h * out->w;
    L.bytes = 4.0 * n * (in_n + out_n);
    if (nd->op == OP_CONV) {
        const conv2d *c = &nd->conv;
        L.k = c->KH;
        L.stride = c->p.stride;
        L.dilation = c->p.dilation;
        L.flops = 2.0 * n * out_n * c->C * c->KH * c->KW;
        L.bytes += 4.0 * ((double)c->OC * c->C * c->KH * c->KW + c->OC) + (nd->res >= 0 ? 4.0 * n * out_n : 0.0);
    }
    L.seconds = m->node_seconds ? m->node_seconds[i] : 0.0;
    L.kernel = m->cuda                ? dl_cuda_node_kernel(m, i)
               : nd->op != OP_CONV    ? ""
               : m->packed            ? conv2d_kernel_name(m->packed[i].kernel)
                                      : m->info.path;
    return L;
}

size_t dl_model_plan_bytes(const dl_model *m)
{
    return sizeof(float) * (m->arena_floats + m->scratch_floats + m->fast_scratch_floats);
}

size_t dl_model_device_bytes(const dl_model *m) { return m->cuda ? dl_cuda_device_bytes(m) : 0; }

double dl_model_device_seconds(const dl_model *m) { return m->cuda ? dl_cuda_device_seconds(m) : 0.0; }

dl_status dl_forward_outputs(dl_model *m, const float *input, int n, int h, int w, const dl_outputs *out)
{
    if (n < 1 || h < 1 || w < 1)
        return dl_fail(DL_EUSAGE, "input of %d image(s) of %dx%d: expected at least one image of 1x1", n, w, h);
    if (!out || (!out->logits && !out->mass && !out->labels))
        return dl_fail(DL_EUSAGE, "a forward pass with no output asked for (logits, mass or labels)");
    dl_status s = dl_plan(m, n, h, w); /* shapes (and the CPU arena) for this input size */
    if (s != DL_OK) return s;
    if (m->info.device == DL_DEVICE_CUDA) return dl_forward_cuda(m, input, out);
    /* the CPU: the logits, then from them what else was asked for */
    const int C = m->info.num_classes;
    const size_t hw = (size_t)h * w;
    float *logits = out->logits;
    if (!logits && !(logits = dl_alloc(sizeof(float) * (size_t)n * C * hw, "the logits"))) return DL_ENOMEM;
    s = m->packed ? dl_forward_cpu_fast(m, input, logits) : dl_forward_cpu(m, input, logits);
    for (int i = 0; s == DL_OK && i < n; i++) {
        const float *lg = logits + (size_t)i * C * hw;
        if (out->mass) dl_class_prob(lg, C, h, w, out->classes, out->mass + (size_t)i * hw);
        if (out->labels)
            for (size_t q = 0; q < hw; q++) out->labels[(size_t)i * hw + q] = (uint8_t)argmax_pixel(lg + q, C, (int64_t)hw);
    }
    if (logits != out->logits) free(logits);
    return s;
}

dl_status dl_forward(dl_model *m, const float *input, int n, int h, int w, float *logits)
{
    const dl_outputs out = {.logits = logits};
    return dl_forward_outputs(m, input, n, h, w, &out);
}
