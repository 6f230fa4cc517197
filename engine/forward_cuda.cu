/*
 * forward_cuda.cu - the GPU path of the engine (cuda_backend.h): the node list of model.h run by
 * the CUDA layers (layers_cuda.h), mirroring forward_cpu.c node for node.
 *
 *   dl_cuda_init     picks device 0, creates one stream, uploads every convolution's folded
 *                    weights and bias once, into one allocation (and frees the host copies).
 *   dl_forward_cuda  plans device memory for the input size when it changes (one arena laid out
 *                    by the CPU planner's liveness offsets, plan.c, plus the input and the outputs
 *                    and pinned host buffers for the copies); then, all on the stream: input up,
 *                    the network, the outputs asked for down (dl_outputs: the logits, the class
 *                    mass, the arg-max, made on the GPU); one synchronisation per call.
 *
 * Precision fp32 runs the fp32 kernels (conv2d_cuda, NCHW); tf32, fp16 and bf16 the tensor-core
 * path of forward_tc.cu (NHWC in the storage type). The network (every node, and the outputs) is
 * captured once per plan and set of outputs into a CUDA graph, and every forward replays it: one
 * launch instead of ~120, whose host cost would otherwise be as long as the network itself at
 * batch 1 on a fast GPU. Not with the profile on (its events sit between the nodes), with
 * DEEPLAB_CUDA_SYNC, with the cudnn backend, or with DEEPLAB_CUDA_GRAPH=0.
 *
 * Every CUDA call is checked (CUDA_CHECK names the statement, file and line) and every launch too,
 * naming the node: "CUDA error in backbone.layer3.5.conv2: ...". A fault inside a kernel shows at
 * the synchronisation; with DEEPLAB_CUDA_SYNC=1 in the environment the engine synchronises after
 * every node instead, so that the message names the layer that faulted. With the per-layer
 * profile on (dl_model_set_profile), an event before each node and one after the last time the
 * layers on the stream (the only extra cost; the synchronisation stays at the end).
 *
 * With the cudnn backend (info.backend, cudnn_backend.h) the convolutions go to cuDNN and cuBLAS
 * instead of conv2d_cuda, on the same stream, between the same events; every other node is run
 * as here. Each new device plan first prepares them all (algorithm searches on the plan's zeroed
 * buffers), so that searching never happens inside a forward pass.
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_state.h"
#include "cudnn_backend.h"
#include "layers_cuda.h"
#include "model.h"
#include "status.h"

static const double MB = 1024.0 * 1024.0;

/* 16 floats: keeps every tensor in d_params 64-byte aligned, like the arena's values. */
static size_t round16(size_t floats) { return (floats + 15) & ~(size_t)15; }

static dl_status out_of_gpu_memory(const dl_model *m, const cuda_state *st, size_t want)
{
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError(); /* only for the message */
    return dl_fail(DL_ENOMEM, "out of GPU memory: %d image(s) of %dx%d need %.0f MB on the device "
                              "(weights %.0f MB; %.0f MB of %.0f MB free); try a smaller --size",
                   m->plan_n, m->plan_w, m->plan_h, (double)(st->params_bytes + want) / MB,
                   (double)st->params_bytes / MB, (double)free_b / MB, (double)total_b / MB);
}

static void free_graph(cuda_state *st)
{
    if (st->graph) (void)cudaGraphExecDestroy(st->graph);
    st->graph = NULL;
    st->graph_outputs = 0;
}

static void free_plan(cuda_state *st)
{
    /* Teardown: there is nothing useful to do with an error here, and a sticky error from an
     * earlier fault was already reported by the call that met it. */
    free_graph(st);
    (void)cudaFree(st->d_arena);
    (void)cudaFree(st->d_input);
    (void)cudaFree(st->d_output);
    (void)cudaFree(st->d_mass);
    (void)cudaFree(st->d_labels);
    (void)cudaFree(st->d_keep);
    (void)cudaFreeHost(st->h_input);
    (void)cudaFreeHost(st->h_output);
    (void)cudaFreeHost(st->h_mass);
    (void)cudaFreeHost(st->h_labels);
    (void)cudaFreeHost(st->h_keep);
    dl_tc_free_plan(st->tc);
    st->d_arena = st->d_input = st->d_output = st->h_input = st->h_output = st->d_mass = st->h_mass = NULL;
    st->d_labels = st->h_labels = st->d_keep = st->h_keep = NULL;
    st->arena_bytes = st->input_bytes = st->output_bytes = 0;
    st->n = st->h = st->w = 0;
}

extern "C" void dl_cuda_free(dl_model *m)
{
    cuda_state *st = (cuda_state *)m->cuda;
    if (!st) return;
    if (st->stream) (void)cudaStreamSynchronize(st->stream);
    free_plan(st);
    dl_dnn_free(st->dnn);
    dl_tc_free(st->tc);
    (void)cudaFree(st->d_params);
    if (st->ev_start) (void)cudaEventDestroy(st->ev_start);
    if (st->ev_end) (void)cudaEventDestroy(st->ev_end);
    if (st->events)
        for (int i = 0; i <= m->nnodes; i++)
            if (st->events[i]) (void)cudaEventDestroy(st->events[i]);
    free(st->events);
    if (st->stream) (void)cudaStreamDestroy(st->stream);
    free(st->conv);
    free(st->kernel);
    free(st->d_value);
    free(st);
    m->cuda = NULL;
}

extern "C" size_t dl_cuda_device_bytes(const dl_model *m)
{
    const cuda_state *st = (const cuda_state *)m->cuda;
    return st ? st->peak_bytes : 0;
}

extern "C" double dl_cuda_device_seconds(const dl_model *m)
{
    const cuda_state *st = (const cuda_state *)m->cuda;
    if (!st) return 0;
    float ms = 0;
    if (cudaEventElapsedTime(&ms, st->ev_start, st->ev_end) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return 1e-3 * ms;
}

extern "C" const char *dl_cuda_node_kernel(const dl_model *m, int i)
{
    const cuda_state *st = (const cuda_state *)m->cuda;
    if (!st || i < 0 || i >= m->nnodes) return "";
    if (st->tc) return st->tc->nodes[i].kernel;
    return st->kernel && st->kernel[i] ? st->kernel[i] : "";
}

/* Copies every convolution's folded weights and bias into one device allocation. */
static dl_status upload_weights(dl_model *m, cuda_state *st)
{
    size_t floats = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const conv2d *c = &m->nodes[i].conv;
        if (m->nodes[i].op == OP_CONV) floats += round16((size_t)c->OC * c->C * c->KH * c->KW) + round16((size_t)c->OC);
    }
    st->params_bytes = floats * sizeof(float);
    const cudaError_t e = cudaMalloc((void **)&st->d_params, st->params_bytes ? st->params_bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        st->d_params = NULL;
        if (e == cudaErrorMemoryAllocation)
            return dl_fail(DL_ENOMEM, "out of GPU memory: the weights need %.0f MB", (double)st->params_bytes / MB);
        return dl_cuda_check_failed(e, "cudaMalloc(weights)", __FILE__, __LINE__);
    }
    size_t at = 0;
    for (int i = 0; i < m->nnodes; i++) {
        if (m->nodes[i].op != OP_CONV) continue;
        const conv2d *c = &m->nodes[i].conv;
        const size_t nw = (size_t)c->OC * c->C * c->KH * c->KW;
        conv2d *d = &st->conv[i];
        *d = *c;
        d->weight = st->d_params + at;
        at += round16(nw);
        CUDA_CHECK(cudaMemcpyAsync((void *)d->weight, c->weight, nw * sizeof(float), cudaMemcpyHostToDevice,
                                   st->stream));
        if (c->bias) {
            d->bias = st->d_params + at;
            CUDA_CHECK(cudaMemcpyAsync((void *)d->bias, c->bias, (size_t)c->OC * sizeof(float),
                                       cudaMemcpyHostToDevice, st->stream));
        }
        at += round16((size_t)c->OC);
    }
    /* The copies go on the model's own stream, so every forward pass (on that stream) comes after
     * them. A plain cudaMemcpy would not do: from pageable memory it returns once the data is
     * staged, with the device write still queued on the legacy default stream, which a
     * cudaStreamNonBlocking stream is not ordered with. One wait here, before the host copies go. */
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    /* The device copy is the one used from now on (as the fast CPU path does with its packed
     * copy): the host layout goes, 234 MB for ResNet-101. */
    for (int i = 0; i < m->nnodes; i++) {
        if (m->nodes[i].op != OP_CONV) continue;
        conv2d *c = &m->nodes[i].conv;
        free((void *)c->weight);
        free((void *)c->bias);
        c->weight = c->bias = NULL;
    }
    st->peak_bytes = st->params_bytes;
    return DL_OK;
}

extern "C" dl_status dl_cuda_init(dl_model *m)
{
    cuda_state *st = (cuda_state *)calloc(1, sizeof *st);
    if (!st) return dl_fail(DL_ENOMEM, "out of memory starting the CUDA backend");
    m->cuda = st; /* from here on dl_model_free -> dl_cuda_free cleans up after any failure */
    st->conv = (conv2d *)calloc((size_t)m->nnodes, sizeof *st->conv);
    st->d_value = (float **)calloc((size_t)m->nvalues, sizeof *st->d_value);
    if (!st->conv || !st->d_value) return dl_fail(DL_ENOMEM, "out of memory starting the CUDA backend");
    const char *sync = getenv("DEEPLAB_CUDA_SYNC"), *graphs = getenv("DEEPLAB_CUDA_GRAPH");
    st->sync_each = sync && *sync && strcmp(sync, "0") != 0;
    st->use_graphs = !(graphs && !strcmp(graphs, "0"));
    st->kernel = (const char **)calloc((size_t)m->nnodes, sizeof *st->kernel);
    if (!st->kernel) return dl_fail(DL_ENOMEM, "out of memory starting the CUDA backend");
    const int dnn = m->info.backend == DL_BACKEND_CUDNN;
    for (int i = 0; i < m->nnodes; i++) {
        static const char *const names[] = {"conv2d fp32 64x64 (simt)", "maxpool", "avgpool", "resize bilinear"};
        st->kernel[i] = dnn && m->nodes[i].op == OP_CONV ? "cudnn / cublas" : names[m->nodes[i].op];
    }

    CUDA_CHECK(cudaSetDevice(0));
    int major = 0, minor = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0));
    st->sm = 10 * major + minor;
    CUDA_CHECK(cudaDeviceGetAttribute(&st->sms, cudaDevAttrMultiProcessorCount, 0));
    CUDA_CHECK(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreate(&st->ev_start));
    CUDA_CHECK(cudaEventCreate(&st->ev_end));
    if (m->info.backend == DL_BACKEND_NATIVE && m->info.precision != DL_PRECISION_FP32) {
        if (st->sm < 80)
            return dl_fail(DL_EUNAVAILABLE, "precision %s needs a GPU of compute capability 8.0 or later (this one is %d.%d)",
                           m->info.precision == DL_PRECISION_TF32 ? "tf32" : m->info.precision == DL_PRECISION_FP16
                                                                             ? "fp16" : "bf16",
                           major, minor);
        const int e = conv2d_tc_init();
        if (e) return dl_cuda_check_failed((cudaError_t)e, "conv2d_tc_init()", __FILE__, __LINE__);
        dl_status s = dl_tc_init(m, st);
        if (s != DL_OK) return s;
        /* the device copy (packed) is the one used from now on: the host layout goes */
        for (int i = 0; i < m->nnodes; i++) {
            conv2d *c = &m->nodes[i].conv;
            free((void *)c->weight);
            free((void *)c->bias);
            c->weight = c->bias = NULL;
        }
        st->peak_bytes = st->tc->params_bytes;
        return DL_OK;
    }
    dl_status s = upload_weights(m, st);
    if (s == DL_OK && m->info.backend == DL_BACKEND_CUDNN)
        s = dl_dnn_create(st->stream, m->info.precision, m->nnodes, &st->dnn);
    return s;
}

static dl_status prepare_dnn(dl_model *m, cuda_state *st);

/* Device memory for the plan dl_plan made (m->plan_n/h/w, value offsets, arena_floats). */
static dl_status plan_device(dl_model *m, cuda_state *st)
{
    if (st->n == m->plan_n && st->h == m->plan_h && st->w == m->plan_w) return DL_OK;
    free_plan(st);
    const size_t n = (size_t)m->plan_n, hw = (size_t)m->plan_h * (size_t)m->plan_w;
    size_t in_floats, out_floats;
    if (dl_mul_size(n * 3, hw, &in_floats) || dl_mul_size(n * (size_t)m->info.num_classes, hw, &out_floats) ||
        m->arena_floats > ((size_t)1 << 40))
        return dl_fail(DL_ENOMEM, "input of %d x %dx%d is too large for the GPU", m->plan_n, m->plan_w, m->plan_h);
    const size_t in = in_floats * sizeof(float), out = out_floats * sizeof(float);
    /* the tensor-core path has its own arena, and makes the logits at input size only when asked */
    const size_t arena = st->tc ? 0 : m->arena_floats * sizeof(float);

    cudaError_t e = st->tc ? cudaSuccess : cudaMalloc((void **)&st->d_arena, arena ? arena : 1);
    if (e == cudaSuccess) e = cudaMalloc((void **)&st->d_input, in);
    if (e == cudaSuccess && !st->tc) e = cudaMalloc((void **)&st->d_output, out);
    if (e != cudaSuccess) {
        cudaGetLastError();
        free_plan(st);
        if (e == cudaErrorMemoryAllocation) return out_of_gpu_memory(m, st, arena + in + out);
        return dl_cuda_check_failed(e, "cudaMalloc(activations)", __FILE__, __LINE__);
    }
    e = cudaMallocHost((void **)&st->h_input, in);
    if (e != cudaSuccess) {
        cudaGetLastError();
        free_plan(st);
        return dl_fail(dl_cuda_status(e), "CUDA error allocating %.0f MB of pinned host memory for the input and "
                                          "the logits: %s", (double)(in + out) / MB, cudaGetErrorString(e));
    }
    st->arena_bytes = arena;
    st->input_bytes = in;
    st->output_bytes = out;
    if (st->tc) {
        const dl_status s = dl_tc_plan(m, st);
        if (s != DL_OK) {
            free_plan(st);
            return s == DL_ENOMEM ? out_of_gpu_memory(m, st, st->tc->plan_bytes + in) : s;
        }
    } else {
        for (int i = 0; i < m->nvalues; i++) st->d_value[i] = st->d_arena + m->values[i].offset;
        st->d_value[VALUE_INPUT] = st->d_input;
        st->d_value[m->output] = st->d_output;
    }
    st->n = m->plan_n;
    st->h = m->plan_h;
    st->w = m->plan_w;
    if (st->dnn) {
        const dl_status s = prepare_dnn(m, st);
        if (s != DL_OK) {
            free_plan(st); /* the next forward plans again */
            return s;
        }
    }
    const size_t held = st->tc ? st->tc->params_bytes + st->tc->plan_bytes + in
                               : st->params_bytes + arena + in + out + dl_dnn_workspace_bytes(st->dnn, 1);
    if (held > st->peak_bytes) st->peak_bytes = held;
    return DL_OK;
}

/* The buffers of the outputs asked for (made on first use under a plan): device and pinned host. */
static dl_status plan_outputs(const dl_model *m, cuda_state *st, int outputs)
{
    const size_t px = (size_t)m->plan_n * m->plan_h * m->plan_w;
    const int C = m->info.num_classes;
    cudaError_t e = cudaSuccess;
    size_t more = 0;
    if ((outputs & OUT_LOGITS) && !st->h_output) {
        if (!st->d_output) e = cudaMalloc((void **)&st->d_output, st->output_bytes), more += st->output_bytes;
        if (e == cudaSuccess) e = cudaMallocHost((void **)&st->h_output, st->output_bytes);
    }
    if (e == cudaSuccess && (outputs & OUT_MASS) && !st->d_mass) {
        e = cudaMalloc((void **)&st->d_mass, 4 * px);
        if (e == cudaSuccess) e = cudaMallocHost((void **)&st->h_mass, 4 * px);
        more += 4 * px;
    }
    if (e == cudaSuccess && (outputs & OUT_LABELS) && !st->d_labels) {
        e = cudaMalloc((void **)&st->d_labels, px);
        if (e == cudaSuccess) e = cudaMallocHost((void **)&st->h_labels, px);
        more += px;
    }
    if (e == cudaSuccess && !st->d_keep) {
        e = cudaMalloc((void **)&st->d_keep, (size_t)C);
        if (e == cudaSuccess) e = cudaMallocHost((void **)&st->h_keep, (size_t)C);
        st->keep_c = -1;
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        free_graph(st); /* it may name buffers of the plan; the plan itself stays */
        if (e == cudaErrorMemoryAllocation) return out_of_gpu_memory(m, st, more);
        return dl_fail(dl_cuda_status(e), "CUDA error allocating the outputs: %s", cudaGetErrorString(e));
    }
    st->peak_bytes += more;
    return DL_OK;
}

/* The channels [c0, c0 + c) of value v on the device, for every image (forward_cpu.c's view). */
static tensor dview(const dl_model *m, const cuda_state *st, int v, int c0, int c)
{
    const value *val = &m->values[v];
    const size_t hw = (size_t)val->h * val->w;
    tensor t = {st->d_value[v] + (size_t)c0 * hw, m->plan_n, c, val->h, val->w, (size_t)val->c * hw};
    return t;
}

/* Convolution node i's input, output (a channel slice of it) and residual (res->data NULL: none). */
static void conv_views(const dl_model *m, const cuda_state *st, int i, tensor *in, tensor *out, tensor *res)
{
    const node *nd = &m->nodes[i];
    *in = dview(m, st, nd->in, 0, m->values[nd->in].c);
    *out = dview(m, st, nd->out, nd->out_c0, nd->conv.OC);
    *res = nd->res >= 0 ? dview(m, st, nd->res, 0, nd->conv.OC) : tensor{};
}

/* The cudnn backend: every convolution of the plan prepared (cudnn_backend.h). The searches run
 * the convolutions on the plan's buffers, zeroed first so that they read no uninitialised memory. */
static dl_status prepare_dnn(dl_model *m, cuda_state *st)
{
    CUDA_CHECK(cudaMemsetAsync(st->d_arena, 0, st->arena_bytes, st->stream));
    CUDA_CHECK(cudaMemsetAsync(st->d_input, 0, st->input_bytes, st->stream));
    CUDA_CHECK(cudaMemsetAsync(st->d_output, 0, st->output_bytes, st->stream));
    for (int i = 0; i < m->nnodes; i++) {
        if (m->nodes[i].op != OP_CONV) continue;
        tensor in, out, res;
        conv_views(m, st, i, &in, &out, &res);
        const dl_status s = dl_dnn_prepare(st->dnn, i, m->nodes[i].name, &st->conv[i], in, res.data ? &res : NULL, out);
        if (s != DL_OK) return s;
    }
    return dl_dnn_settle(st->dnn);
}

/* Launches node i on the stream (fp32 path); returns the launch's cudaError_t. */
static int run_node(const dl_model *m, const cuda_state *st, int i)
{
    const node *nd = &m->nodes[i];
    const value *vin = &m->values[nd->in], *vout = &m->values[nd->out];
    const tensor in = dview(m, st, nd->in, 0, vin->c);
    switch (nd->op) {
    case OP_CONV: {
        const tensor out = dview(m, st, nd->out, nd->out_c0, nd->conv.OC);
        tensor res;
        if (nd->res >= 0) res = dview(m, st, nd->res, 0, nd->conv.OC);
        return conv2d_cuda(&st->conv[i], in, nd->res >= 0 ? &res : NULL, out, st->stream);
    }
    case OP_MAXPOOL:
        return maxpool2d_cuda(in, 3, 2, 1, dview(m, st, nd->out, 0, vout->c), st->stream);
    case OP_AVGPOOL:
        return global_avgpool_cuda(in, dview(m, st, nd->out, 0, vout->c), st->stream);
    case OP_RESIZE:
        return resize_bilinear_cuda(in, dview(m, st, nd->out, nd->out_c0, vin->c), st->stream);
    }
    return (int)cudaErrorInvalidValue;
}

/* A node's launch failed (or an earlier node's fault surfaced at its launch): one line naming the
 * node, with what to do where there is something to do. The stream is drained first so that the
 * pinned buffers are free again. */
static dl_status node_failed(const cuda_state *st, const node *nd, cudaError_t e)
{
    cudaGetLastError();
    (void)cudaStreamSynchronize(st->stream);
    cudaGetLastError();
    const char *hint = "";
    char arch[96] = "";
    if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction) {
        snprintf(arch, sizeof arch, " (built for another GPU: rebuild with make CUDA_ARCH=sm_%d)", st->sm);
        hint = arch;
    } else if (e != cudaErrorInvalidValue && e != cudaErrorInvalidConfiguration &&
               e != cudaErrorLaunchOutOfResources && e != cudaErrorMemoryAllocation && !st->sync_each) {
        hint = " (a fault of an earlier layer can surface here; DEEPLAB_CUDA_SYNC=1 checks each layer as it runs)";
    }
    return dl_fail(dl_cuda_status(e), "CUDA error in %s: %s%s", nd->name, cudaGetErrorString(e), hint);
}

/* The network on the stream: the input into NHWC (tensor-core path), every node, and the outputs
 * asked for; with events between the nodes when profiling, a synchronisation after each with
 * DEEPLAB_CUDA_SYNC. What a CUDA graph captures. Returns DL_OK or the failure, naming the node. */
static dl_status run_network(const dl_model *m, const cuda_state *st, int outputs, int profile)
{
    if (st->tc) {
        const cudaError_t e = (cudaError_t)dl_tc_input(m, st);
        if (e != cudaSuccess) return node_failed(st, &m->nodes[0], e);
    }
    for (int i = 0; i < m->nnodes; i++) {
        if (profile) CUDA_CHECK(cudaEventRecord(st->events[i], st->stream));
        cudaError_t e = cudaSuccess;
        if (st->dnn && m->nodes[i].op == OP_CONV) { /* cuDNN / cuBLAS: their own message, naming the node */
            tensor in, out, res;
            conv_views(m, st, i, &in, &out, &res);
            const dl_status s = dl_dnn_conv(st->dnn, i, &st->conv[i], in, res.data ? &res : NULL, out);
            if (s != DL_OK) {
                cudaGetLastError();
                (void)cudaStreamSynchronize(st->stream); /* the pinned buffers are free again */
                cudaGetLastError();
                return s;
            }
        } else if (st->tc) {
            e = (cudaError_t)dl_tc_node(m, st, i, outputs);
        } else {
            e = (cudaError_t)run_node(m, st, i);
        }
        /* the fp32 and cudnn paths: the class mass and arg-max from the logits, with the last node */
        if (e == cudaSuccess && !st->tc && i == m->nnodes - 1 && (outputs & (OUT_MASS | OUT_LABELS))) {
            const tensor lg = dview(m, st, m->output, 0, m->info.num_classes);
            e = (cudaError_t)class_outputs_cuda(lg, outputs & OUT_MASS ? st->d_mass : NULL, st->d_keep,
                                                outputs & OUT_LABELS ? st->d_labels : NULL, st->stream);
        }
        if (e == cudaSuccess && st->sync_each) e = cudaStreamSynchronize(st->stream);
        if (e != cudaSuccess) return node_failed(st, &m->nodes[i], e);
    }
    if (profile) CUDA_CHECK(cudaEventRecord(st->events[m->nnodes], st->stream));
    return DL_OK;
}

/* The network captured as a CUDA graph for this plan and these outputs (made again when either
 * changes), then launched. */
static dl_status launch_graph(const dl_model *m, cuda_state *st, int outputs)
{
    if (!st->graph || st->graph_outputs != outputs) {
        free_graph(st);
        CUDA_CHECK(cudaStreamBeginCapture(st->stream, cudaStreamCaptureModeGlobal));
        const dl_status s = run_network(m, st, outputs, 0);
        cudaGraph_t g = NULL;
        const cudaError_t e = cudaStreamEndCapture(st->stream, &g);
        if (s != DL_OK) {
            if (g) (void)cudaGraphDestroy(g);
            cudaGetLastError();
            return s;
        }
        if (e != cudaSuccess) return dl_cuda_check_failed(e, "cudaStreamEndCapture(the network)", __FILE__, __LINE__);
        const cudaError_t ie = cudaGraphInstantiate(&st->graph, g, 0);
        (void)cudaGraphDestroy(g);
        if (ie != cudaSuccess) {
            st->graph = NULL;
            return dl_cuda_check_failed(ie, "cudaGraphInstantiate(the network)", __FILE__, __LINE__);
        }
        st->graph_outputs = outputs;
    }
    CUDA_CHECK(cudaGraphLaunch(st->graph, st->stream));
    return DL_OK;
}

/* Events for the per-layer profile, made on the first profiled forward. */
static dl_status make_events(const dl_model *m, cuda_state *st)
{
    if (st->events) return DL_OK;
    st->events = (cudaEvent_t *)calloc((size_t)m->nnodes + 1, sizeof *st->events);
    if (!st->events) return dl_fail(DL_ENOMEM, "out of memory for the profile's events");
    for (int i = 0; i <= m->nnodes; i++) CUDA_CHECK(cudaEventCreate(&st->events[i]));
    return DL_OK;
}

/* After the synchronisation: each node's time between its two events. */
static dl_status read_profile(dl_model *m, const cuda_state *st)
{
    for (int i = 0; i < m->nnodes; i++) {
        float ms = 0.0f;
        CUDA_CHECK(cudaEventElapsedTime(&ms, st->events[i], st->events[i + 1]));
        m->node_seconds[i] = 1e-3 * ms;
    }
    return DL_OK;
}

extern "C" dl_status dl_forward_cuda(dl_model *m, const float *input, const dl_outputs *o)
{
    cuda_state *st = (cuda_state *)m->cuda;
    if (!st) return dl_fail(DL_EINTERNAL, "the CUDA backend was not initialised");
    dl_status s = plan_device(m, st);
    if (s != DL_OK) return s;
    const int outputs = (o->logits ? OUT_LOGITS : 0) | (o->mass ? OUT_MASS : 0) | (o->labels ? OUT_LABELS : 0);
    if ((s = plan_outputs(m, st, outputs)) != DL_OK) return s;
    const int profile = m->profile && m->node_seconds;
    if (profile && (s = make_events(m, st)) != DL_OK) return s;

    memcpy(st->h_input, input, st->input_bytes);
    CUDA_CHECK(cudaMemcpyAsync(st->d_input, st->h_input, st->input_bytes, cudaMemcpyHostToDevice, st->stream));
    const int C = m->info.num_classes;
    if ((outputs & OUT_MASS) && (o->classes || st->keep_c != 0)) { /* the class flags, when they change */
        for (int c = 0; c < C; c++) st->h_keep[c] = o->classes ? o->classes[c] != 0 : c != 0;
        CUDA_CHECK(cudaMemcpyAsync(st->d_keep, st->h_keep, (size_t)C, cudaMemcpyHostToDevice, st->stream));
        st->keep_c = o->classes ? 1 : 0; /* 0: the default flags are there */
    }
    CUDA_CHECK(cudaEventRecord(st->ev_start, st->stream));
    const int graph = st->use_graphs && !profile && !st->sync_each && !st->dnn;
    s = graph ? launch_graph(m, st, outputs) : run_network(m, st, outputs, profile);
    if (s != DL_OK) {
        cudaGetLastError();
        (void)cudaStreamSynchronize(st->stream); /* the pinned buffers are free again */
        cudaGetLastError();
        return s;
    }
    CUDA_CHECK(cudaEventRecord(st->ev_end, st->stream));
    const size_t px = (size_t)m->plan_n * m->plan_h * m->plan_w;
    if (outputs & OUT_LOGITS)
        CUDA_CHECK(cudaMemcpyAsync(st->h_output, st->d_output, st->output_bytes, cudaMemcpyDeviceToHost, st->stream));
    if (outputs & OUT_MASS)
        CUDA_CHECK(cudaMemcpyAsync(st->h_mass, st->d_mass, 4 * px, cudaMemcpyDeviceToHost, st->stream));
    if (outputs & OUT_LABELS)
        CUDA_CHECK(cudaMemcpyAsync(st->h_labels, st->d_labels, px, cudaMemcpyDeviceToHost, st->stream));
    const cudaError_t e = cudaStreamSynchronize(st->stream); /* the one wait of the forward pass */
    if (e != cudaSuccess) {
        cudaGetLastError();
        return dl_fail(dl_cuda_status(e), "CUDA error while running the network: %s (run with DEEPLAB_CUDA_SYNC=1 "
                                          "to name the layer)", cudaGetErrorString(e));
    }
    if (outputs & OUT_LOGITS) memcpy(o->logits, st->h_output, st->output_bytes);
    if (outputs & OUT_MASS) memcpy(o->mass, st->h_mass, 4 * px);
    if (outputs & OUT_LABELS) memcpy(o->labels, st->h_labels, px);
    return profile ? read_profile(m, st) : DL_OK;
}
