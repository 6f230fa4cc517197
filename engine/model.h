/*
 * model.h - the network as data: a list of nodes (layers) reading and writing values
 * (activation tensors), built once from the weights file and run in order.
 *
 * DeepLabV3 = ResNet backbone (output stride 8) + DeepLabHead (ASPP + 3x3 conv + 1x1 classifier)
 * + a bilinear resize of the logits back to the input size. Every convolution carries its folded
 * BatchNorm as a bias; ReLU and the residual add are flags of the convolution that precedes them.
 * See ../shared/MODEL.md for the shapes, and model.c for how the list is built.
 */
#ifndef DL_MODEL_H
#define DL_MODEL_H

#include <stddef.h>

#include "deeplab.h"
#include "layers.h"
#include "threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum op_kind {
    OP_CONV,    /* conv + folded BN (+ residual) (+ ReLU) */
    OP_MAXPOOL, /* 3x3, stride 2, padding 1 (the stem) */
    OP_AVGPOOL, /* global average pooling (ASPP image pooling) */
    OP_RESIZE   /* bilinear, align_corners=False, to the size of value size_of */
} op_kind;

typedef struct node {
    char name[64]; /* torchvision's module name, e.g. "backbone.layer3.5.conv2" */
    op_kind op;
    conv2d conv;   /* OP_CONV: shapes, parameters, folded weights (owned by the model) */
    int in, out;   /* value ids */
    int res;       /* OP_CONV: value added before the ReLU, or -1 */
    int out_c0;    /* first channel of out this node writes (ASPP branches fill the concat) */
    int size_of;   /* OP_RESIZE: the value whose height and width to produce */
} node;

typedef struct value {
    int c, h, w;     /* per image; h and w are set by the planner */
    int first, last; /* first node writing it, last node reading it */
    int external;    /* the network input and output live in the caller's memory */
    size_t offset;   /* floats from the arena start */
    float *data;     /* set before each run */
} value;

enum { VALUE_INPUT = 0 };

struct dl_model {
    dl_model_info info;
    char *path;
    node *nodes;
    int nnodes, nodes_cap;
    value *values;
    int nvalues, values_cap;
    int output; /* value id of the logits at input size */

    /* the plan for the last (n, h, w) */
    int plan_n, plan_h, plan_w;
    float *arena;
    size_t arena_floats;
    float *scratch;
    size_t scratch_floats;

    dl_pool *pool;
    void *cuda; /* the GPU state (forward_cuda.cu) when info.device is DL_DEVICE_CUDA */

    /* per-layer profile: node_seconds[i] of the last forward when profile is on */
    int profile;
    double *node_seconds;

    /* the fast CPU path (forward_cpu_fast.c); NULL packed = the plain-C reference path */
    struct conv2d_packed *packed; /* per node (OP_CONV entries used) */
    float *fast_scratch;          /* the largest conv2d_fast_scratch_floats of the current plan */
    size_t fast_scratch_floats;
    float *fast_io;               /* the input in NHWC and the logits in NCHW, for the plan */
    size_t fast_io_floats;
};

/* engine/plan.c: shapes and buffers for n images of h x w; reuses the plan if unchanged. */
dl_status dl_plan(dl_model *m, int n, int h, int w);
void dl_plan_free(dl_model *m);

/* engine/forward_cpu.c: the plain-C reference path */
dl_status dl_forward_cpu(dl_model *m, const float *input, float *logits);

/* engine/forward_cpu_fast.c: packs the weights for each convolution's kernel (bf16: the bf16
 * kinds) and frees the reference copies; runs */
dl_status dl_fast_init(dl_model *m, int bf16);
dl_status dl_forward_cpu_fast(dl_model *m, const float *input, float *logits);
void dl_fast_free(dl_model *m);

#ifdef __cplusplus
}
#endif
#endif
