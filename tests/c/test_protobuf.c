/* test_protobuf.c: the protobuf writer of the ONNX export (csrc/export/protobuf.c):
 * varints (1, 2 and 10 bytes, negative int64), fixed32 floats, strings and nested
 * messages, byte for byte against protobuf's encoding; and an allocation failure
 * reported once. */
#include <string.h>

#include "../../csrc/export/protobuf.h"
#include "check.h"

static int bytes_equal(const tg_pb_buf *b, const unsigned char *want, size_t n)
{
    return b->len == n && memcmp(b->data, want, n) == 0;
}

static void test_varints(void)
{
    tg_pb_buf b;
    tg_pb_init(&b);
    tg_pb_field_varint(&b, 1, 150);   /* protobuf's own example: 08 96 01 */
    static const unsigned char example[] = {0x08, 0x96, 0x01};
    CHECK(bytes_equal(&b, example, sizeof example));
    tg_pb_reset(&b);
    tg_pb_field_varint(&b, 3, (uint64_t)(int64_t)-1);   /* int64 -1: ten bytes */
    static const unsigned char minus_one[] = {0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    CHECK(bytes_equal(&b, minus_one, sizeof minus_one));
    tg_pb_reset(&b);
    tg_pb_field_varint(&b, 20, 0);   /* field 20: a two-byte tag a0 01 */
    static const unsigned char zero[] = {0xa0, 0x01, 0x00};
    CHECK(bytes_equal(&b, zero, sizeof zero));
    tg_pb_free(&b);
}

static void test_lengths_and_floats(void)
{
    tg_pb_buf inner, outer;
    tg_pb_init(&inner);
    tg_pb_init(&outer);
    tg_pb_field_string(&inner, 1, "ab");
    tg_pb_field_float(&inner, 2, 1.0f);
    tg_pb_field_message(&outer, 7, &inner);
    static const unsigned char want[] = {0x3a, 0x09, 0x0a, 0x02, 'a', 'b', 0x15, 0x00, 0x00, 0x80, 0x3f};
    CHECK(bytes_equal(&outer, want, sizeof want));
    CHECK_OK(tg_pb_check(&outer, "test"));
    outer.failed = 1;
    CHECK(tg_pb_check(&outer, "test") == TG_STATUS_NOMEM);
    CHECK(strstr(tg_error_message(), "out of memory") != NULL);
    tg_pb_free(&inner);
    tg_pb_free(&outer);
}

int main(void)
{
    test_varints();
    test_lengths_and_floats();
    return check_report("test_protobuf");
}
