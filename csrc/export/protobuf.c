/* protobuf.c: the protocol-buffers writer of protobuf.h (varints, fixed32,
 * length-delimited fields). Writes only; nothing here parses. */
#include "protobuf.h"

#include <stdlib.h>
#include <string.h>

void tg_pb_init(tg_pb_buf *buf) { memset(buf, 0, sizeof *buf); }

void tg_pb_free(tg_pb_buf *buf)
{
    free(buf->data);
    memset(buf, 0, sizeof *buf);
}

void tg_pb_reset(tg_pb_buf *buf)
{
    buf->len = 0;
    buf->failed = 0;
}

/* Makes room for n more bytes; 0 on failure (and marks the buffer failed). */
static int reserve(tg_pb_buf *buf, size_t n)
{
    if (buf->failed) return 0;
    if (buf->len + n <= buf->cap) return 1;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < buf->len + n) cap *= 2;
    unsigned char *data = realloc(buf->data, cap);
    if (!data) {
        buf->failed = 1;
        return 0;
    }
    buf->data = data;
    buf->cap = cap;
    return 1;
}

void tg_pb_raw(tg_pb_buf *buf, const void *bytes, size_t n)
{
    if (n == 0 || !reserve(buf, n)) return;
    memcpy(buf->data + buf->len, bytes, n);
    buf->len += n;
}

void tg_pb_varint(tg_pb_buf *buf, uint64_t value)
{
    unsigned char bytes[10];   /* 7 bits a byte: 64 bits take at most 10 */
    size_t n = 0;
    do {
        unsigned char low = value & 0x7f;
        value >>= 7;
        bytes[n++] = (unsigned char)(low | (value ? 0x80 : 0));
    } while (value);
    tg_pb_raw(buf, bytes, n);
}

static void tag(tg_pb_buf *buf, int field, tg_pb_wire wire) { tg_pb_varint(buf, (uint64_t)field << 3 | (uint64_t)wire); }

void tg_pb_field_varint(tg_pb_buf *buf, int field, uint64_t value)
{
    tag(buf, field, TG_PB_WIRE_VARINT);
    tg_pb_varint(buf, value);
}

void tg_pb_field_float(tg_pb_buf *buf, int field, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    unsigned char le[4] = {bits & 0xff, bits >> 8 & 0xff, bits >> 16 & 0xff, bits >> 24 & 0xff};
    tag(buf, field, TG_PB_WIRE_FIXED32);
    tg_pb_raw(buf, le, sizeof le);
}

void tg_pb_field_bytes(tg_pb_buf *buf, int field, const void *bytes, size_t n)
{
    tag(buf, field, TG_PB_WIRE_LENGTH);
    tg_pb_varint(buf, n);
    tg_pb_raw(buf, bytes, n);
}

void tg_pb_field_string(tg_pb_buf *buf, int field, const char *text) { tg_pb_field_bytes(buf, field, text, strlen(text)); }

void tg_pb_field_message(tg_pb_buf *buf, int field, const tg_pb_buf *message)
{
    if (message->failed) buf->failed = 1;
    tg_pb_field_bytes(buf, field, message->data, message->len);
}

tg_status tg_pb_check(const tg_pb_buf *buf, const char *what)
{
    if (!buf->failed) return TG_STATUS_OK;
    return tg_error(TG_STATUS_NOMEM, "%s: out of memory while serialising (%zu bytes written so far); free memory "
                    "or export a smaller model", what, buf->len);
}
