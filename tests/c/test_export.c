/* test_export.c: the ONNX export without Python, under ASan+UBSan in make test: the
 * protobuf writer (csrc/export/protobuf.c) byte for byte against protobuf's encoding
 * (varints of 1, 2 and 10 bytes, fixed32 floats, strings, nested messages, a failure
 * reported once); a small graph (conv, batchnorm, relu, pool, flatten, linear) written
 * to a file; an op with no mapping refused with its name and no file left. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../csrc/core/graph.h"
#include "../../csrc/export/onnx.h"
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

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    return size;
}

static void test_graph_export(void)
{
    tg_graph g;
    tg_graph_init(&g);
    int64_t x_shape[4] = {2, 3, 8, 8}, w_shape[4] = {4, 3, 3, 3}, c_shape[1] = {4}, fc_shape[2] = {5, 4};
    tg_node_id x, w, gamma, beta, mean, var, fc_w, fc_b, y;
    CHECK_OK(tg_graph_input(&g, "input", TG_DTYPE_F32, 4, x_shape, &x));
    CHECK_OK(tg_graph_param(&g, "conv1.weight", 4, w_shape, 1, &w));
    CHECK_OK(tg_graph_param(&g, "bn1.weight", 1, c_shape, 1, &gamma));
    CHECK_OK(tg_graph_param(&g, "bn1.bias", 1, c_shape, 1, &beta));
    CHECK_OK(tg_graph_buffer(&g, "bn1.running_mean", TG_DTYPE_F32, 1, c_shape, &mean));
    CHECK_OK(tg_graph_buffer(&g, "bn1.running_var", TG_DTYPE_F32, 1, c_shape, &var));
    CHECK_OK(tg_graph_param(&g, "fc.weight", 2, fc_shape, 1, &fc_w));
    CHECK_OK(tg_graph_param(&g, "fc.bias", 1, fc_shape, 1, &fc_b));
    CHECK_OK(tg_graph_op(&g, tg_op_find("conv2d"), (tg_node_id[]){x, w}, 2, NULL, &y));
    CHECK_OK(tg_graph_op(&g, tg_op_find("batchnorm2d"), (tg_node_id[]){y, gamma, beta, mean, var}, 5, NULL, &y));
    CHECK_OK(tg_graph_op(&g, tg_op_find("relu"), &y, 1, NULL, &y));
    CHECK_OK(tg_graph_op(&g, tg_op_find("global_avg_pool"), &y, 1, NULL, &y));
    CHECK_OK(tg_graph_op(&g, tg_op_find("flatten"), &y, 1, NULL, &y));
    tg_node_id logits, total;
    CHECK_OK(tg_graph_op(&g, tg_op_find("linear"), (tg_node_id[]){y, fc_w, fc_b}, 3, NULL, &logits));
    CHECK_OK(tg_graph_op(&g, tg_op_find("sum"), &logits, 1, NULL, &total));

    const char *keys[1] = {"arch"}, *values[1] = {"tiny"};
    tg_onnx_options options = {.n_metadata = 1, .metadata_keys = keys, .metadata_values = values};
    char path[64];
    snprintf(path, sizeof path, "/tmp/trugrade_test_export_%d.onnx", (int)getpid());
    CHECK_OK(tg_onnx_export_graph(&g, x, logits, &options, path));
    /* 4*3*3*3 + 4*4 + 5*4 + 5 floats of initializers at least */
    CHECK(file_size(path) > (long)(sizeof(float) * (108 + 16 + 20 + 5)));
    options.float16 = 1;
    CHECK_OK(tg_onnx_export_graph(&g, x, logits, &options, path));
    CHECK(file_size(path) > 0);
    remove(path);

    CHECK(tg_onnx_export_graph(&g, x, total, &options, path) == TG_STATUS_UNSUPPORTED);
    CHECK(strstr(tg_error_message(), "op 'sum'") != NULL);
    CHECK(file_size(path) == -1);
    CHECK(tg_onnx_export_graph(&g, w, logits, &options, path) == TG_STATUS_VALUE);
    tg_graph_free(&g);
}

int main(void)
{
    test_varints();
    test_lengths_and_floats();
    test_graph_export();
    return check_report("test_export");
}
