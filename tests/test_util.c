/* test_util.c: one-block workspaces (ws_alloc).
 *
 * Every buffer of the table lands in the block, aligned to WS_ALIGN,
 * zeroed, disjoint from the others and in the table's order; a count of 0
 * gives NULL; the head struct is copied in after its pointers are set; a
 * size past SIZE_MAX is refused with a message naming the workspace and the
 * pointers are left as they were. */
#include "util.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int tag;
    float *a;
    double *b;
    int *none;
} head;

START_TEST(buffers_in_one_block)
{
    char err[ERR_LEN] = "";
    head t = {.tag = 42};
    float *outside = NULL;
    ws_buf bufs[] = {WS_BUF(t.a, 3), WS_BUF(t.none, 0), WS_BUF(t.b, 5), WS_BUF(outside, 1)};
    char *block = ws_alloc(bufs, WS_COUNT(bufs), &t, sizeof t, err, "test workspace");
    ck_assert_msg(block != NULL, "%s", err);
    head *h = (head *)block;
    ck_assert_int_eq(h->tag, 42);
    ck_assert_ptr_eq(h->a, t.a);
    ck_assert_ptr_eq(h->b, t.b);
    ck_assert_ptr_null(h->none);
    ck_assert((char *)t.a >= block + sizeof t);
    ck_assert((char *)t.b >= (char *)(t.a + 3));
    ck_assert((char *)outside >= (char *)(t.b + 5));
    ck_assert_uint_eq((uintptr_t)t.a % WS_ALIGN, 0);
    ck_assert_uint_eq((uintptr_t)t.b % WS_ALIGN, 0);
    ck_assert_uint_eq((uintptr_t)outside % WS_ALIGN, 0);
    for (int i = 0; i < 3; i++)
        ck_assert(t.a[i] == 0.0f);
    for (int i = 0; i < 5; i++)
        ck_assert(t.b[i] == 0.0);
    ck_assert(outside[0] == 0.0f);
    free(block);
}
END_TEST

START_TEST(overflow_refused)
{
    char err[ERR_LEN] = "";
    float *a = (float *)&err, *b = NULL;
    ws_buf bufs[] = {WS_BUF(b, 4), WS_BUF(a, SIZE_MAX / 2)};
    ck_assert_ptr_null(ws_alloc(bufs, WS_COUNT(bufs), NULL, 0, err, "huge workspace"));
    ck_assert_msg(strstr(err, "huge workspace") != NULL, "%s", err);
    ck_assert_ptr_eq(a, (float *)&err);
    ck_assert_ptr_null(b);
    /* Two halves that each fit but not together. */
    char *c = NULL, *d = NULL;
    ws_buf two[] = {WS_BUF(c, SIZE_MAX / 2), WS_BUF(d, SIZE_MAX / 2)};
    ck_assert_ptr_null(ws_alloc(two, WS_COUNT(two), NULL, 0, err, "two halves"));
    ck_assert_msg(strstr(err, "two halves") != NULL, "%s", err);
    ck_assert(c == NULL && d == NULL);
}
END_TEST

START_TEST(empty_table)
{
    char err[ERR_LEN] = "";
    void *block = ws_alloc(NULL, 0, NULL, 0, err, "nothing");
    ck_assert_msg(block != NULL, "%s", err);
    free(block);
}
END_TEST

static Suite *util_suite(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("workspaces");
    tcase_add_test(tc, buffers_in_one_block);
    tcase_add_test(tc, overflow_refused);
    tcase_add_test(tc, empty_table);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(util_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
