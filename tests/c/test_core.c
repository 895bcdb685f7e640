/* test_core.c: the core without Python: status messages, tensors, the thread pool,
 * and an op called through the table. Built plain and with ASan+UBSan by make test. */
#include <stdlib.h>
#include <string.h>

#include "../../csrc/core/status.h"
#include "../../csrc/core/tensor.h"
#include "../../csrc/core/threads.h"
#include "../../csrc/ops/op.h"
#include "check.h"

static void test_status(void)
{
    tg_status s = tg_error(TG_STATUS_SHAPE, "bad dim %d", 3);
    CHECK(s == TG_STATUS_SHAPE);
    CHECK(strcmp(tg_error_message(), "bad dim 3") == 0);
    CHECK(strcmp(tg_status_name(TG_STATUS_DECODE), "decode") == 0);
}

static void test_tensor(void)
{
    tg_tensor t;
    int64_t shape[3] = {2, 3, 4};
    CHECK_OK(tg_tensor_init(&t, TG_DTYPE_F32, 3, shape));
    CHECK(tg_tensor_numel(&t) == 24);
    CHECK(((uintptr_t)t.data & 63) == 0);
    tg_tensor v;
    int64_t flat[1] = {24};
    CHECK_OK(tg_tensor_share(&v, &t, 1, flat));
    CHECK(v.data == t.data && t.storage->refcount == 2);
    int64_t wrong[1] = {25};
    tg_tensor w;
    CHECK(tg_tensor_share(&w, &t, 1, wrong) == TG_STATUS_SHAPE);
    tg_tensor_free(&t);
    CHECK(v.storage->refcount == 1);
    tg_tensor_free(&v);
    int64_t too_many[6] = {1, 1, 1, 1, 1, 1};
    CHECK(tg_tensor_init(&t, TG_DTYPE_F32, 6, too_many) == TG_STATUS_SHAPE);
    CHECK(tg_bf16_to_f32(tg_bf16_from_f32(1.0f)) == 1.0f);
    CHECK(tg_bf16_from_f32(1.00390625f) == 0x3f80); /* ties to even */
}

static void sum_range(void *ctx, int64_t begin, int64_t end, int thread_index)
{
    int64_t *out = ctx;
    for (int64_t i = begin; i < end; i++) out[i] = i * 2 + 0 * thread_index;
}

static void test_threads(void)
{
    int64_t out[1000];
    for (int threads = 1; threads <= 3; threads++) {
        CHECK_OK(tg_threads_set(threads));
        memset(out, 0, sizeof out);
        tg_parallel_for(1000, 1, sum_range, out);
        int ok = 1;
        for (int i = 0; i < 1000; i++) ok &= out[i] == i * 2;
        CHECK(ok);
    }
    CHECK(tg_threads_set(0) == TG_STATUS_VALUE);
    tg_threads_shutdown();
}

static void test_op_call(void)
{
    const tg_op_def *relu = tg_op_find("relu");
    CHECK(relu != NULL);
    CHECK(tg_op_find("no_such_op") == NULL);
    tg_tensor x;
    int64_t shape[2] = {3, 5};
    CHECK_OK(tg_tensor_init(&x, TG_DTYPE_F32, 2, shape));
    float *xd = x.data;
    for (int i = 0; i < 15; i++) xd[i] = (float)(i - 7);
    const tg_tensor *in[1] = {&x};
    tg_op_call call = {.def = relu, .in = in, .n_in = 1};
    CHECK_OK(tg_op_call_forward(&call));
    const float *y = call.out.data;
    CHECK(y[0] == 0.0f && y[14] == 7.0f);
    tg_tensor g, grads[1];
    CHECK_OK(tg_tensor_init(&g, TG_DTYPE_F32, 2, shape));
    for (int i = 0; i < 15; i++) ((float *)g.data)[i] = 1.0f;
    int want[1] = {1};
    CHECK_OK(tg_op_call_backward(&call, &g, want, grads));
    CHECK(((float *)grads[0].data)[0] == 0.0f && ((float *)grads[0].data)[14] == 1.0f);
    tg_tensor_free(&grads[0]);
    tg_tensor_free(&g);
    tg_op_call_free(&call);
    tg_tensor_free(&x);
    for (int i = 0; i < tg_op_count(); i++) CHECK(tg_op_at(i)->forward && tg_op_at(i)->infer);
    tg_threads_shutdown();
}

int main(void)
{
    test_status();
    test_tensor();
    test_threads();
    test_op_call();
    return check_report("test_core");
}
