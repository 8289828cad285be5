/* json.c: see json.h. */
#include "json.h"

#include <math.h>

void json_put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

void json_put_number(FILE *f, const char *key, double v, const char *end)
{
    if (isfinite(v))
        fprintf(f, "  \"%s\": %.6f%s", key, v, end);
    else
        fprintf(f, "  \"%s\": null%s", key, end);
}
