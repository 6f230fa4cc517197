/*
 * plan.c - shapes and activation memory for one input size, computed once and reused.
 *
 * Every value (activation tensor) gets its height and width by walking the nodes in order, and
 * a place in one arena. Two values share memory when their lifetimes do not overlap: a value
 * lives from the node that first writes it to the last node that reads it. Values are placed
 * first-fit, in node order, into the lowest gap between the values still alive. At 520x520 the
 * 400-odd activations of ResNet-101 fit in a few times the largest of them.
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "model.h"
#include "status.h"

typedef struct block {
    size_t off, size;
    int value;
} block;

/* First-fit placement of size floats among the live blocks (sorted by offset). */
static size_t place(block *live, int *nlive, size_t size, int value_id, size_t *arena_end)
{
    size_t cur = 0;
    int j = 0;
    for (; j < *nlive; j++) {
        if (live[j].off >= cur + size) break;
        cur = live[j].off + live[j].size;
    }
    memmove(&live[j + 1], &live[j], sizeof *live * (size_t)(*nlive - j));
    live[j] = (block){cur, size, value_id};
    (*nlive)++;
    if (cur + size > *arena_end) *arena_end = cur + size;
    return cur;
}

static dl_status shapes(dl_model *m, int h, int w)
{
    value *v = m->values;
    for (int i = 0; i < m->nvalues; i++) {
        v[i].h = v[i].w = 0;
        v[i].first = v[i].last = -1;
    }
    v[VALUE_INPUT].h = h;
    v[VALUE_INPUT].w = w;
    v[VALUE_INPUT].first = -1;
    for (int i = 0; i < m->nnodes; i++) {
        const node *nd = &m->nodes[i];
        value *in = &v[nd->in], *out = &v[nd->out];
        int oh = 0, ow = 0;
        switch (nd->op) {
        case OP_CONV: {
            const conv2d *c = &nd->conv;
            oh = conv_out_size(in->h, c->KH, c->p.stride, c->p.pad, c->p.dilation);
            ow = conv_out_size(in->w, c->KW, c->p.stride, c->p.pad, c->p.dilation);
            break;
        }
        case OP_MAXPOOL:
            oh = conv_out_size(in->h, 3, 2, 1, 1);
            ow = conv_out_size(in->w, 3, 2, 1, 1);
            break;
        case OP_AVGPOOL:
            oh = ow = 1;
            break;
        case OP_RESIZE:
            oh = v[nd->size_of].h;
            ow = v[nd->size_of].w;
            break;
        }
        if (oh < 1 || ow < 1) return dl_fail(DL_EINTERNAL, "%s: empty output for a %dx%d input", nd->name, w, h);
        if (out->first < 0) {
            out->first = i;
            out->h = oh;
            out->w = ow;
        } else if (out->h != oh || out->w != ow) {
            return dl_fail(DL_EINTERNAL, "%s: writes %dx%d into a %dx%d value", nd->name, ow, oh, out->w, out->h);
        }
        in->last = i;
        if (nd->res >= 0) v[nd->res].last = i;
    }
    v[m->output].last = m->nnodes;
    return DL_OK;
}

void dl_plan_free(dl_model *m)
{
    free(m->arena);
    free(m->scratch);
    m->arena = m->scratch = NULL;
    m->arena_floats = m->scratch_floats = 0;
    m->plan_n = m->plan_h = m->plan_w = 0;
}

dl_status dl_plan(dl_model *m, int n, int h, int w)
{
    if (m->plan_n == n && m->plan_h == h && m->plan_w == w) return DL_OK;
    dl_plan_free(m);
    dl_status s = shapes(m, h, w);
    if (s != DL_OK) return s;

    block *live = malloc(sizeof *live * (size_t)m->nvalues);
    if (!live) return dl_fail(DL_ENOMEM, "out of memory planning activations");
    int nlive = 0;
    size_t end = 0;
    for (int i = 0; i < m->nnodes; i++) {
        for (int j = 0; j < nlive;) /* free what no later node reads */
            if (m->values[live[j].value].last < i) {
                memmove(&live[j], &live[j + 1], sizeof *live * (size_t)(nlive - j - 1));
                nlive--;
            } else {
                j++;
            }
        value *out = &m->values[m->nodes[i].out];
        if (out->first != i || out->external) continue;
        size_t floats;
        if (dl_mul_size((size_t)n * out->c, (size_t)out->h * out->w, &floats) || floats > ((size_t)1 << 40)) {
            free(live);
            return dl_fail(DL_ENOMEM, "input of %d x %dx%d is too large to plan", n, w, h);
        }
        floats = (floats + 15) & ~(size_t)15; /* keep every value 64-byte aligned */
        out->offset = place(live, &nlive, floats, m->nodes[i].out, &end);
    }
    free(live);

    /* Host memory only for the CPU: the GPU path lays out its device arena with the same offsets
     * (forward_cuda.cu). */
    if (m->info.device != DL_DEVICE_CUDA) {
        m->scratch_floats = (size_t)dl_pool_threads(m->pool) * conv2d_cpu_scratch_floats();
        m->arena = dl_alloc_aligned(end * sizeof(float), "activations");
        m->scratch = dl_alloc_aligned(m->scratch_floats * sizeof(float), "convolution scratch");
        if (!m->arena || !m->scratch) {
            size_t mb = (end + m->scratch_floats) * sizeof(float) >> 20;
            dl_plan_free(m);
            return dl_fail(DL_ENOMEM, "out of memory: %d image(s) of %dx%d need %zu MB of activations "
                                      "(try a smaller --size)", n, w, h, mb);
        }
    }
    m->arena_floats = end;
    m->plan_n = n;
    m->plan_h = h;
    m->plan_w = w;
    return DL_OK;
}
