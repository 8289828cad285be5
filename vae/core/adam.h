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

#endif
