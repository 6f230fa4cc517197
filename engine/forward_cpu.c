/* forward_cpu.c - runs the node list on the CPU, layer after layer, in the planned memory. */
#include "clock.h"
#include "model.h"
#include "threadpool.h"

/* The channels [c0, c0 + c) of value v, for every image of the batch. */
static tensor view(const value *v, int n, int c0, int c)
{
    tensor t = {v->data + (size_t)c0 * v->h * v->w, n, c, v->h, v->w, (size_t)v->c * v->h * v->w};
    return t;
}

dl_status dl_forward_cpu(dl_model *m, const float *input, float *logits)
{
    const int n = m->plan_n;
    for (int i = 0; i < m->nvalues; i++) m->values[i].data = m->arena + m->values[i].offset;
    m->values[VALUE_INPUT].data = (float *)input; /* read only */
    m->values[m->output].data = logits;

    for (int i = 0; i < m->nnodes; i++) {
        const node *nd = &m->nodes[i];
        const double t0 = m->profile ? dl_now() : 0.0;
        const value *vin = &m->values[nd->in], *vout = &m->values[nd->out];
        tensor in = view(vin, n, 0, vin->c);
        switch (nd->op) {
        case OP_CONV: {
            tensor res, out = view(vout, n, nd->out_c0, nd->conv.OC);
            if (nd->res >= 0) res = view(&m->values[nd->res], n, 0, nd->conv.OC);
            conv2d_cpu(&nd->conv, in, nd->res >= 0 ? &res : NULL, out, m->scratch, m->pool);
            break;
        }
        case OP_MAXPOOL:
            maxpool2d_cpu(in, 3, 2, 1, view(vout, n, 0, vout->c), m->pool);
            break;
        case OP_AVGPOOL:
            global_avgpool_cpu(in, view(vout, n, 0, vout->c));
            break;
        case OP_RESIZE:
            resize_bilinear_cpu(in, view(vout, n, nd->out_c0, vin->c), m->pool);
            break;
        }
        if (m->profile) m->node_seconds[i] = dl_now() - t0;
    }
    return DL_OK;
}
