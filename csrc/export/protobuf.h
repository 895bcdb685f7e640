/* protobuf.h: a minimal protocol-buffers writer, enough to serialise ONNX models:
 * varints, fixed32 floats and length-delimited fields (strings, bytes, nested
 * messages), appended to a growable byte buffer.
 *
 * A nested message is written into its own buffer first and then appended with its
 * length (tg_pb_message), so no size has to be known in advance. Not a reader, and
 * no schema: callers name the field numbers of the .proto they follow.
 * NOTE: an allocation failure sets `failed` and turns every later write into a
 * no-op, so that a serialiser checks once, at the end (tg_pb_check). */
#ifndef TG_PROTOBUF_H
#define TG_PROTOBUF_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

typedef enum tg_pb_wire {
    TG_PB_WIRE_VARINT = 0,
    TG_PB_WIRE_FIXED64 = 1,
    TG_PB_WIRE_LENGTH = 2,
    TG_PB_WIRE_FIXED32 = 5,
} tg_pb_wire;

typedef struct tg_pb_buf {
    unsigned char *data;   /* [len] bytes written so far, [cap] allocated */
    size_t len, cap;
    int failed;            /* 1 after an allocation failure */
} tg_pb_buf;

void tg_pb_init(tg_pb_buf *buf);
void tg_pb_free(tg_pb_buf *buf);
/* Empties the buffer, keeping its memory. */
void tg_pb_reset(tg_pb_buf *buf);

/* Raw bytes and a raw varint (no tag). */
void tg_pb_raw(tg_pb_buf *buf, const void *bytes, size_t n);
void tg_pb_varint(tg_pb_buf *buf, uint64_t value);

/* Field writers: a tag (field << 3 | wire type), then the value. int64 values are
 * written as their two's-complement uint64 (10 bytes when negative), as protobuf's
 * int64 requires. */
void tg_pb_field_varint(tg_pb_buf *buf, int field, uint64_t value);
void tg_pb_field_float(tg_pb_buf *buf, int field, float value);
void tg_pb_field_bytes(tg_pb_buf *buf, int field, const void *bytes, size_t n);
void tg_pb_field_string(tg_pb_buf *buf, int field, const char *text);
/* Appends `message` (a whole serialised message) as a length-delimited field. */
void tg_pb_field_message(tg_pb_buf *buf, int field, const tg_pb_buf *message);

/* TG_STATUS_NOMEM naming `what` when a write of this buffer failed. */
tg_status tg_pb_check(const tg_pb_buf *buf, const char *what);

#endif
