/*
 * cuda_state.h - what the GPU path keeps per model (forward_cuda.cu, and forward_tc.cu for the
 * tensor-core precisions). Internal to engine/; C++ only.
 */
#ifndef DL_CUDA_STATE_H
#define DL_CUDA_STATE_H

#include <cuda_runtime.h>

#include "cudnn_backend.h"
#include "layers_cuda.h"
#include "model.h"
#include "tc.h"

/* Which outputs a forward pass makes on the device (and copies back): dl_outputs' non-NULL ones. */
enum { OUT_LOGITS = 1, OUT_MASS = 2, OUT_LABELS = 4 };

/* The tensor-core path's part in a node (forward_tc.cu). */
enum tc_role {
    ROLE_PLAIN = 0,  /* as the node says, in NHWC */
    ROLE_POOL_CONV,  /* the image-pooling 1x1 conv on the pooled vector: fp32 mat-vec */
    ROLE_POOL_FOLD,  /* the pooled branch's broadcast into the concatenation: folded into the
                        projection's bias (its 256 channels times their projection weights) */
    ROLE_PROJECT,    /* the projection: reads the other 1024 channels, bias per image */
    ROLE_LOGITS,     /* the classifier: fp32 logits, NHWC */
    ROLE_OUTPUTS     /* the final resize: the outputs asked for (tc_outputs_cuda) */
};

typedef struct tc_node {
    int role;
    conv_tc conv;     /* OP_CONV (but ROLE_POOL_CONV): packed weights and bias on the device */
    tc_config cfg;    /* for the current plan */
    char kernel[80];  /* what runs it, for the profile */
} tc_node;

typedef struct tc_state {
    tc_precision p;
    tc_node *nodes;        /* per node */
    unsigned char *d_params; /* every packed weight and bias, and the fp32 ones below */
    size_t params_bytes;
    const float *pool_w, *pool_b; /* ROLE_POOL_CONV: OC x C, fp32 */
    const float *fold_w;          /* ROLE_PROJECT: its OC x 256 weights of the pooled channels */
    int pool_c, pool_oc, fold_c0; /* the pooled branch's sizes; the projection's pooled channels start at fold_c0 */
    int project;                  /* the projection's node */
    /* the device plan */
    unsigned char *d_arena;  /* values in NHWC, the storage type, at the CPU planner's offsets x its size */
    void *d_in8;             /* the input, NHWC, 8 channels */
    float *d_logits;         /* NHWC fp32 at the feature size */
    float *d_pooled, *d_pc, *d_bias; /* N x pool_c, N x pool_oc, N x OC (the projection's bias per image) */
    float *d_ws;             /* split-K workspace */
    float *d_avg_ws;         /* the average pool's partial sums */
    size_t ws_floats, arena_bytes, plan_bytes;
} tc_state;

typedef struct cuda_state {
    cudaStream_t stream;
    int sm;              /* the GPU's compute capability, e.g. 90 */
    int sms;             /* multiprocessors */
    int sync_each;       /* DEEPLAB_CUDA_SYNC: synchronise and check after every node */
    int use_graphs;      /* DEEPLAB_CUDA_GRAPH=0 turns the CUDA graphs off */
    float *d_params;     /* all folded weights and biases (fp32 path) */
    size_t params_bytes;
    conv2d *conv;        /* per node: nodes[i].conv with weight and bias in d_params (OP_CONV) */
    const char **kernel; /* per node: what runs it (fp32 path) */

    /* the device plan for n images of h x w (n = 0: none yet) */
    int n, h, w;
    float *d_arena, *d_input, *d_output; /* d_output: the logits at input size (tensor-core path: when asked for) */
    size_t arena_bytes, input_bytes, output_bytes;
    float *h_input, *h_output; /* pinned staging: the copies run asynchronously on the stream */
    float **d_value;           /* per value: its device memory under this plan (fp32 path) */
    /* the other outputs, made when first asked for under this plan */
    float *d_mass, *h_mass;
    uint8_t *d_labels, *h_labels, *d_keep, *h_keep;
    int keep_c;

    /* one CUDA graph per plan and set of outputs, replayed by every forward */
    cudaGraphExec_t graph;
    int graph_outputs;

    size_t peak_bytes; /* the most device memory held at once */
    cudaEvent_t *events; /* profiling (dl_model_set_profile): one before each node and one at the end */
    cudaEvent_t ev_start, ev_end; /* around the network in every forward: its device time */
    dl_dnn *dnn;         /* the cudnn backend's handles and algorithm choices, or NULL (native) */
    tc_state *tc;        /* the tensor-core path (precision tf32, fp16, bf16), or NULL (fp32) */
} cuda_state;

/* forward_tc.cu */
dl_status dl_tc_init(dl_model *m, cuda_state *st);
dl_status dl_tc_plan(dl_model *m, cuda_state *st);
void dl_tc_free_plan(tc_state *tc);
void dl_tc_free(tc_state *tc);
int dl_tc_input(const dl_model *m, const cuda_state *st);            /* the input into NHWC */
int dl_tc_node(const dl_model *m, const cuda_state *st, int i, int outputs); /* node i's kernels */

#endif
