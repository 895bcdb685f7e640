/* check.h: the few macros the plain C tests use; ends with "N passed, N failed". */
#ifndef TG_CHECK_H
#define TG_CHECK_H

#include <math.h>
#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (cond) check_passed++;                                                      \
        else {                                                                         \
            check_failed++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

#define CHECK_OK(expr)                                                                 \
    do {                                                                               \
        tg_status check_status_ = (expr);                                              \
        if (check_status_ == TG_STATUS_OK) check_passed++;                             \
        else {                                                                         \
            check_failed++;                                                            \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, tg_error_message()); \
        }                                                                              \
    } while (0)

#define CHECK_NEAR(a, b, tol) CHECK(fabs((double)(a) - (double)(b)) <= (tol))

static int check_report(const char *suite)
{
    printf("%s: %d passed, %d failed\n", suite, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
