/* status.c: thread-local error messages behind tg_error(). */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char tg_error_buffer[1024];

tg_status tg_error(tg_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tg_error_buffer, sizeof tg_error_buffer, fmt, ap);
    va_end(ap);
    return status;
}

const char *tg_error_message(void) { return tg_error_buffer; }

void tg_error_clear(void) { tg_error_buffer[0] = '\0'; }

const char *tg_status_name(tg_status status)
{
    static const char *const names[TG_STATUS_COUNT] = {
        [TG_STATUS_OK] = "ok",           [TG_STATUS_SHAPE] = "shape",
        [TG_STATUS_DTYPE] = "dtype",     [TG_STATUS_VALUE] = "value",
        [TG_STATUS_CONFIG] = "config",   [TG_STATUS_DATASET] = "dataset",
        [TG_STATUS_DECODE] = "decode",   [TG_STATUS_IO] = "io",
        [TG_STATUS_NOMEM] = "nomem",     [TG_STATUS_INTERRUPTED] = "interrupted",
        [TG_STATUS_UNSUPPORTED] = "unsupported", [TG_STATUS_INTERNAL] = "internal",
    };
    if ((int)status < 0 || status >= TG_STATUS_COUNT) return "unknown";
    return names[status];
}
