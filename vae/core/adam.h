/* adam.h: Adam over one flat parameter buffer. */
#ifndef GSVAE_ADAM_H
#define GSVAE_ADAM_H

#include <stddef.h>

typedef struct {
    size_t n;
    float *m, *v;     /* first and second moments, n each */
    long t;           /* updates taken */
    float beta1, beta2, eps;
    int threads;      /* threads for the update (1: the caller's alone) */
} adam_state;

int adam_init(adam_state *s, size_t n, char *err);
void adam_free(adam_state *s);
/* params -= lr * mhat / (sqrt(vhat) + eps), with bias correction. */
void adam_update(adam_state *s, float *params, const float *grads, float lr);

/* Adam whose whole state lives in a caller's float buffer (a task's
 * persistent state, so that a checkpoint of that buffer resumes the
 * optimizer): the n parameters' first moments at moments[0, n), second
 * moments at moments[n, 2n), and the step count in a float slot that
 * adam_persist_step reads and writes back.  Adam's usual betas (0.9,
 * 0.999) and eps 1e-8, one thread; a points into the buffer and owns
 * nothing (no adam_free). */
void adam_persist_init(adam_state *a, float *moments, size_t n);
void adam_persist_step(adam_state *a, float *params, const float *grads, float lr, float *steps);

#endif
