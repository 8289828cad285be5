/* runckpt.c: the training run's checkpoint on top of the ckpt container.
 * Sections: "config" (the options as name=value lines, so a checkpoint is
 * self-describing), "params", "adam_m", "adam_v", "state" (counters and the
 * generator), "order" (the data permutation), "log" (log.csv's rows) and
 * "estimator" (the estimator's persistent state: baselines and their Adam
 * moments, so that --resume continues them exactly). */
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "train.h"
#include "util.h"

enum { STATE_WORDS = 12 };

static size_t format_opts(const train_opts *o, char *buf, size_t len)
{
    train_opts copy = *o;
    flag_def defs[TRAIN_MAX_FLAGS];
    train_flag_table(&copy, defs);
    size_t used = 0;
    for (const flag_def *d = defs; d->name; d++) {
        /* Where a run came from, not what it is. */
        if (!strcmp(d->name, "resume") || !strcmp(d->name, "out") || !strcmp(d->name, "data"))
            continue;
        char val[256];
        if (d->kind == FLAG_BOOL) {
            /* The parser takes a bare --name for a set switch and refuses
             * --name=VALUE, so a switch is stored by name when set. */
            if (*(int *)d->dst)
                used += (size_t)snprintf(buf + (used < len ? used : len),
                                         used < len ? len - used : 0, "%s\n", d->name);
            continue;
        }
        switch (d->kind) {
        case FLAG_INT:
        case FLAG_BOOL:
            snprintf(val, sizeof val, "%d", *(int *)d->dst);
            break;
        case FLAG_LONG:
            snprintf(val, sizeof val, "%ld", *(long *)d->dst);
            break;
        case FLAG_DOUBLE:
            snprintf(val, sizeof val, "%.17g", *(double *)d->dst);
            break;
        case FLAG_STRING:
            /* An unset string keeps its built-in default when read back. */
            if (!*(const char **)d->dst)
                continue;
            snprintf(val, sizeof val, "%s", *(const char **)d->dst);
            break;
        }
        used += (size_t)snprintf(buf + (used < len ? used : len), used < len ? len - used : 0,
                                 "%s=%s\n", d->name, val);
    }
    return used;
}

int run_ckpt_save(const char *path, const train_opts *o, const vae_model *m,
                  const adam_state *adam, const run_state *st, char *err)
{
    char config[4096];
    size_t clen = format_opts(o, config, sizeof config);
    if (clen >= sizeof config)
        return errf(err, "%s: options too long to store", path);
    uint64_t state[STATE_WORDS] = {0};
    state[0] = (uint64_t)st->step;
    memcpy(&state[1], &st->seconds, sizeof(double));
    for (int i = 0; i < 4; i++)
        state[2 + i] = st->rng.s[i];
    state[6] = st->pos;
    state[7] = st->epoch;
    state[8] = (uint64_t)adam->t;
    state[9] = (uint64_t)st->nlog;
    state[10] = m->nparams;
    state[11] = st->order_count;
    ckpt_section secs[] = {
        {"config", config, clen},
        {"params", m->params, m->nparams * sizeof(float)},
        {"adam_m", adam->m, adam->n * sizeof(float)},
        {"adam_v", adam->v, adam->n * sizeof(float)},
        {"state", state, sizeof state},
        {"order", st->order, (uint64_t)st->order_count * sizeof(uint32_t)},
        {"log", st->log, (uint64_t)st->nlog * sizeof(log_row)},
        {"estimator", st->est_persist, (uint64_t)st->est_npersist * sizeof(float)},
    };
    return ckpt_write(path, secs, (int)(sizeof secs / sizeof secs[0]), err);
}

int run_ckpt_read_opts(const struct ckpt_file *f, const char *path, train_opts *o,
                       char **text, char *err)
{
    const void *data;
    uint64_t len;
    *text = NULL;
    if (ckpt_get(f, "config", &data, &len, err) != 0)
        return -1;
    if (len > 65536)
        return errf(err, "%s: config section too large (%llu bytes)", path,
                    (unsigned long long)len);
    /* Each line becomes an argument "--name=value" for the flag parser. */
    const char *s = data;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += s[i] == '\n';
    char *buf = malloc(len + 3 * lines + 1);
    char **argv = malloc(sizeof(char *) * lines);
    if (!buf || !argv) {
        free(buf);
        free(argv);
        return errf(err, "%s: out of memory", path);
    }
    int argc = 0;
    size_t w = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && s[j] != '\n')
            j++;
        if (j > i) {
            argv[argc++] = buf + w;
            buf[w++] = '-';
            buf[w++] = '-';
            memcpy(buf + w, s + i, j - i);
            w += j - i;
            buf[w++] = '\0';
        }
        i = j + 1;
    }
    train_opts_default(o);
    flag_def defs[TRAIN_MAX_FLAGS];
    train_flag_table(o, defs);
    char *pos[1];
    int npos;
    char inner[ERR_LEN];
    int rc = flags_parse(defs, argc, argv, pos, 0, &npos, inner);
    free(argv);
    if (rc != 0) {
        free(buf);
        return errf(err, "%s: bad stored options: %s", path, rc < 0 ? inner : "--help");
    }
    *text = buf;
    return 0;
}

int run_ckpt_restore(const struct ckpt_file *f, const char *path, vae_model *m,
                     adam_state *adam, run_state *st, char *err)
{
    uint64_t state[STATE_WORDS];
    if (ckpt_get_exact(f, "params", m->params, m->nparams * sizeof(float), err) != 0 ||
        ckpt_get_exact(f, "state", state, sizeof state, err) != 0)
        return -1;
    if (state[10] != m->nparams)
        return errf(err, "%s: checkpoint has %llu parameters, the model %zu", path,
                    (unsigned long long)state[10], m->nparams);
    if (!adam && !st)
        return 0;
    if (ckpt_get_exact(f, "adam_m", adam->m, adam->n * sizeof(float), err) != 0 ||
        ckpt_get_exact(f, "adam_v", adam->v, adam->n * sizeof(float), err) != 0)
        return -1;
    if (state[11] != st->order_count)
        return errf(err, "%s: checkpoint was trained on %llu examples, this data set has %u",
                    path, (unsigned long long)state[11], st->order_count);
    if (state[9] > (uint64_t)st->nlog)
        return errf(err, "%s: log of %llu rows exceeds the %ld this run can hold", path,
                    (unsigned long long)state[9], st->nlog);
    if (state[6] > st->order_count)
        return errf(err, "%s: data position %llu out of range", path,
                    (unsigned long long)state[6]);
    if (ckpt_get_exact(f, "order", st->order, (uint64_t)st->order_count * sizeof(uint32_t),
                       err) != 0 ||
        ckpt_get_exact(f, "log", st->log, state[9] * sizeof(log_row), err) != 0)
        return -1;
    const void *est;
    uint64_t est_len;
    if (ckpt_get(f, "estimator", &est, &est_len, err) != 0)
        return -1;
    if (est_len != (uint64_t)st->est_npersist * sizeof(float))
        return errf(err, "%s: estimator state has %llu bytes, this run's estimator and "
                         "baseline keep %zu",
                    path, (unsigned long long)est_len, st->est_npersist * sizeof(float));
    memcpy(st->est_persist, est, (size_t)est_len);
    for (uint32_t i = 0; i < st->order_count; i++)
        if (st->order[i] >= st->order_count)
            return errf(err, "%s: data order holds index %u out of range", path, st->order[i]);
    st->step = (long)state[0];
    memcpy(&st->seconds, &state[1], sizeof(double));
    for (int i = 0; i < 4; i++)
        st->rng.s[i] = state[2 + i];
    st->pos = (uint32_t)state[6];
    st->epoch = state[7];
    adam->t = (long)state[8];
    st->nlog = (long)state[9];
    return 0;
}

int run_ckpt_load_model(const char *path, train_opts *o, char **text, vae_model *m, char *err)
{
    ckpt_file *f;
    *text = NULL;
    if (ckpt_read(path, &f, err) != 0)
        return -1;
    vae_config c;
    rng_t r;
    rng_seed(&r, 0);
    char inner[ERR_LEN];
    int rc = -1;
    if (run_ckpt_read_opts(f, path, o, text, err) != 0)
        goto out;
    if (train_opts_check(o, &c, inner) != 0) {
        errf(err, "%s: stored options invalid: %s", path, inner);
        goto out;
    }
    if (vae_init(m, &c, &r, err) != 0)
        goto out;
    uint64_t state[STATE_WORDS];
    if (run_ckpt_restore(f, path, m, NULL, NULL, err) != 0 ||
        ckpt_get_exact(f, "state", state, sizeof state, err) != 0) {
        vae_free(m);
        goto out;
    }
    /* The posterior as the run left it: the scale of its last step. */
    m->logit_scale = train_logit_scale(o, state[0] > 0 ? (long)state[0] - 1 : 0);
    rc = 0;
out:
    if (rc != 0) {
        free(*text);
        *text = NULL;
    }
    ckpt_free(f);
    return rc;
}
