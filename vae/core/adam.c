#include "adam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "util.h"

int adam_init(adam_state *s, size_t n, char *err)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->beta1 = 0.9f;
    s->beta2 = 0.999f;
    s->eps = 1e-8f;
    s->threads = 1;
    s->m = xcalloc(n, sizeof(float), err, "adam moments");
    s->v = xcalloc(n, sizeof(float), err, "adam moments");
    if (!s->m || !s->v) {
        adam_free(s);
        return -1;
    }
    return 0;
}

void adam_free(adam_state *s)
{
    free(s->m);
    free(s->v);
    s->m = s->v = NULL;
}

/* restrict parameters: the four arrays never overlap, which lets the
 * compiler vectorise the loop without run-time alias checks. */
static void adam_kernel(size_t n, float *restrict p, float *restrict mo, float *restrict ve,
                        const float *restrict gr, float b1, float b2, float step, float eps)
{
    for (size_t i = 0; i < n; i++) {
        float g = gr[i];
        float m = b1 * mo[i] + (1.0f - b1) * g;
        float v = b2 * ve[i] + (1.0f - b2) * g * g;
        mo[i] = m;
        ve[i] = v;
        p[i] -= step * m / (sqrtf(v) + eps);
    }
}

typedef struct {
    adam_state *s;
    float *params;
    const float *grads;
    float step, eps;
} adam_job;

static void adam_range(size_t lo, size_t hi, void *ctx)
{
    adam_job *j = ctx;
    adam_kernel(hi - lo, j->params + lo, j->s->m + lo, j->s->v + lo, j->grads + lo,
                j->s->beta1, j->s->beta2, j->step, j->eps);
}

void adam_update(adam_state *s, float *params, const float *grads, float lr)
{
    s->t++;
    /* Fold both bias corrections into the step size, as in Kingma & Ba's
     * efficient form; the moments themselves stay uncorrected. */
    double c1 = 1.0 - pow(s->beta1, (double)s->t), c2 = 1.0 - pow(s->beta2, (double)s->t);
    adam_job j = {s, params, grads, (float)(lr * sqrt(c2) / c1), s->eps * (float)sqrt(c2)};
    /* Memory-bound: a second core adds bandwidth; each element is updated
     * alone, so the result does not depend on the split. */
    par_ranges(s->n, s->threads, adam_range, &j);
}

void adam_persist_init(adam_state *a, float *moments, size_t n)
{
    a->n = n;
    a->m = moments;
    a->v = moments + n;
    a->t = 0;
    a->beta1 = 0.9f;
    a->beta2 = 0.999f;
    a->eps = 1e-8f;
    a->threads = 1;
}

void adam_persist_step(adam_state *a, float *params, const float *grads, float lr, float *steps)
{
    a->t = (long)*steps;
    adam_update(a, params, grads, lr);
    *steps = (float)a->t;
}
