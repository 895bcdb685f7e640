/* status.h: the error contract of the C core.
 *
 * Every fallible function returns a tg_status. On failure it has also recorded a
 * message (thread-local) that names the value, shape or file at fault and what to
 * do. The Python binding turns (status, message) into an exception in one place.
 * This file is not a logger: library code never prints. */
#ifndef TG_STATUS_H
#define TG_STATUS_H

typedef enum tg_status {
    TG_STATUS_OK = 0,
    TG_STATUS_SHAPE,        /* shapes do not agree: ShapeError (ValueError) */
    TG_STATUS_DTYPE,        /* a dtype the op does not take: DTypeError (TypeError) */
    TG_STATUS_VALUE,        /* a bad argument value: TrugradeValueError (ValueError) */
    TG_STATUS_CONFIG,       /* a bad configuration: ConfigError (ValueError) */
    TG_STATUS_DATASET,      /* a dataset problem: DatasetError (ValueError) */
    TG_STATUS_DECODE,       /* an image that cannot be decoded: DecodeError (DatasetError) */
    TG_STATUS_IO,           /* the OS refused a file operation: TrugradeIOError (OSError) */
    TG_STATUS_NOMEM,        /* an allocation failed or a limit was hit: OutOfMemoryError (MemoryError) */
    TG_STATUS_INTERRUPTED,  /* stopped on request (Ctrl-C): KeyboardInterrupt */
    TG_STATUS_UNSUPPORTED,  /* valid but not implemented here: UnsupportedError (NotImplementedError) */
    TG_STATUS_INTERNAL,     /* a broken invariant inside trugrade: TrugradeError (RuntimeError) */
    TG_STATUS_COUNT
} tg_status;

/* Records `message` (printf-style) for the calling thread and returns `status`,
 * so that failure sites read `return tg_error(TG_STATUS_SHAPE, "...", ...);`. */
tg_status tg_error(tg_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The last message recorded on this thread ("" when none). */
const char *tg_error_message(void);

/* Clears this thread's message. */
void tg_error_clear(void);

/* A short stable name for a status ("shape", "dtype", ...). */
const char *tg_status_name(tg_status status);

/* Propagate a failure: evaluates `expr` once and returns its status if not OK. */
#define TG_TRY(expr)                                  \
    do {                                              \
        tg_status tg_try_status_ = (expr);            \
        if (tg_try_status_ != TG_STATUS_OK) return tg_try_status_; \
    } while (0)

#endif
