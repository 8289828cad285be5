/* json.h: the few pieces of JSON the commands write (summary.json, `gsvae
 * eval --json`): one field a line, "  \"key\": value" and what ends it. */
#ifndef GSVAE_JSON_H
#define GSVAE_JSON_H

#include <stdio.h>

/* s as a JSON string, quotes included: '"' and '\\' escaped, the control
 * characters as \u00XX; every other byte as it is (UTF-8 passes through). */
void json_put_string(FILE *f, const char *s);

/* "  \"key\": v" then end (",\n" between fields, "\n}\n" after the last),
 * v with 6 decimals; a NaN or an infinity (a diverged run) as null, since
 * JSON has no such numbers. */
void json_put_number(FILE *f, const char *key, double v, const char *end);

#endif
