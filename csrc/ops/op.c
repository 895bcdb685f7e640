/* op.c: attr defaults, argument checks and the eager call of one op.
 * Not the graph executor (core/graph.c), which runs the same kernels on planned memory. */
#include "op.h"

#include <stdlib.h>
#include <string.h>

void tg_attrs_set_defaults(const tg_op_def *def, void *attrs)
{
    memset(attrs, 0, def->attrs_size);
    for (int i = 0; i < def->n_attrs; i++) {
        const tg_attr_spec *spec = &def->attr_specs[i];
        char *field = (char *)attrs + spec->offset;
        switch (spec->kind) {
        case TG_ATTR_KIND_INT: *(int64_t *)field = (int64_t)spec->default_value; break;
        case TG_ATTR_KIND_FLOAT: *(double *)field = spec->default_value; break;
        case TG_ATTR_KIND_BOOL: *(int *)field = spec->default_value != 0; break;
        case TG_ATTR_KIND_INT_PAIR:
            ((int64_t *)field)[0] = ((int64_t *)field)[1] = (int64_t)spec->default_value;
            break;
        case TG_ATTR_KIND_INT_LIST: ((tg_int_list *)field)->count = 0; break;
        }
    }
}

static const tg_attr_spec *find_attr(const tg_op_def *def, const char *name)
{
    for (int i = 0; i < def->n_attrs; i++)
        if (strcmp(def->attr_specs[i].name, name) == 0) return &def->attr_specs[i];
    return NULL;
}

tg_status tg_attrs_set_ints(const tg_op_def *def, void *attrs, const char *name, const int64_t *values, int count)
{
    const tg_attr_spec *spec = find_attr(def, name);
    if (!spec) return tg_error(TG_STATUS_VALUE, "%s has no attribute '%s'", def->name, name);
    char *field = (char *)attrs + spec->offset;
    switch (spec->kind) {
    case TG_ATTR_KIND_INT:
    case TG_ATTR_KIND_BOOL:
        if (count != 1) break;
        if (spec->kind == TG_ATTR_KIND_INT) *(int64_t *)field = values[0];
        else *(int *)field = values[0] != 0;
        return TG_STATUS_OK;
    case TG_ATTR_KIND_FLOAT:
        if (count != 1) break;
        *(double *)field = (double)values[0];
        return TG_STATUS_OK;
    case TG_ATTR_KIND_INT_PAIR:
        if (count != 1 && count != 2) break;
        ((int64_t *)field)[0] = values[0];
        ((int64_t *)field)[1] = values[count - 1];
        return TG_STATUS_OK;
    case TG_ATTR_KIND_INT_LIST:
        if (count < 0 || count > TG_MAX_INT_LIST) break;
        ((tg_int_list *)field)->count = count;
        memcpy(((tg_int_list *)field)->values, values, sizeof *values * (size_t)count);
        return TG_STATUS_OK;
    }
    return tg_error(TG_STATUS_VALUE, "%s: attribute '%s' does not take %d values", def->name, name, count);
}

tg_status tg_attrs_set_float(const tg_op_def *def, void *attrs, const char *name, double value)
{
    const tg_attr_spec *spec = find_attr(def, name);
    if (!spec) return tg_error(TG_STATUS_VALUE, "%s has no attribute '%s'", def->name, name);
    if (spec->kind != TG_ATTR_KIND_FLOAT) {
        int64_t as_int = (int64_t)value;
        return tg_attrs_set_ints(def, attrs, name, &as_int, 1);
    }
    *(double *)((char *)attrs + spec->offset) = value;
    return TG_STATUS_OK;
}

tg_status tg_op_check_arity(const tg_op_def *def, int n_in, const tg_tensor *const *in)
{
    int declared = 0, required = 0;
    while (def->input_names[declared]) {
        if (def->input_names[declared][0] != '?') required++;
        declared++;
    }
    if (def->variadic) {
        if (n_in < 1 || n_in > TG_MAX_INPUTS)
            return tg_error(TG_STATUS_VALUE, "%s takes 1 to %d inputs, got %d", def->name, TG_MAX_INPUTS, n_in);
        for (int i = 0; i < n_in; i++)
            if (!in[i]) return tg_error(TG_STATUS_VALUE, "%s: input %d is missing", def->name, i);
        return TG_STATUS_OK;
    }
    if (n_in < required || n_in > declared)
        return tg_error(TG_STATUS_VALUE, "%s takes %d to %d inputs, got %d", def->name, required, declared, n_in);
    for (int i = 0; i < n_in; i++)
        if (!in[i] && def->input_names[i][0] != '?')
            return tg_error(TG_STATUS_VALUE, "%s: required input '%s' is missing", def->name, def->input_names[i]);
    return TG_STATUS_OK;
}

tg_status tg_check_dtype(const tg_tensor *t, tg_dtype dtype, const char *op, const char *arg)
{
    if (t->dtype == dtype) return TG_STATUS_OK;
    return tg_error(TG_STATUS_DTYPE, "%s: %s must be %s, got %s", op, arg, tg_dtype_name(dtype), tg_dtype_name(t->dtype));
}

tg_status tg_check_ndim(const tg_tensor *t, int ndim, const char *op, const char *arg)
{
    if (t->ndim == ndim) return TG_STATUS_OK;
    char buf[96];
    return tg_error(TG_STATUS_SHAPE, "%s: %s must have %d dims, got shape %s", op, arg, ndim, tg_shape_str(t, buf, sizeof buf));
}

tg_status tg_op_call_forward(tg_op_call *call)
{
    const tg_op_def *def = call->def;
    memset(&call->out, 0, sizeof call->out);
    call->aux = NULL;
    memset(&call->sizes, 0, sizeof call->sizes);
    TG_TRY(tg_op_check_arity(def, call->n_in, call->in));
    tg_tensor shape;
    memset(&shape, 0, sizeof shape);
    TG_TRY(def->infer(call->in, call->n_in, call->attrs, &shape, &call->sizes));
    TG_TRY(tg_tensor_init(&call->out, shape.dtype, shape.ndim, shape.shape));
    void *scratch = NULL;
    if (call->sizes.aux_bytes) call->aux = tg_aligned_alloc(call->sizes.aux_bytes);
    if (call->sizes.scratch_forward) scratch = tg_aligned_alloc(call->sizes.scratch_forward);
    if ((call->sizes.aux_bytes && !call->aux) || (call->sizes.scratch_forward && !scratch)) {
        tg_aligned_free(scratch);
        tg_op_call_free(call);
        return tg_error(TG_STATUS_NOMEM, "%s: out of memory for %zu bytes of working memory", def->name,
                        call->sizes.aux_bytes + call->sizes.scratch_forward);
    }
    if (call->aux) memset(call->aux, 0, call->sizes.aux_bytes);
    tg_op_io io = {
        .def = def, .attrs = call->attrs, .in = call->in, .n_in = call->n_in, .out = &call->out,
        .aux = call->aux, .scratch = scratch, .training = call->training, .seed = call->seed,
    };
    tg_status status = def->forward(&io);
    tg_aligned_free(scratch);
    if (status != TG_STATUS_OK) tg_op_call_free(call);
    return status;
}

tg_status tg_op_call_backward(tg_op_call *call, const tg_tensor *grad_out, const int *want, tg_tensor *grad_in)
{
    const tg_op_def *def = call->def;
    tg_tensor *grad_ptrs[TG_MAX_INPUTS];
    memset(grad_in, 0, sizeof *grad_in * (size_t)call->n_in);
    if (!def->backward) return tg_error(TG_STATUS_UNSUPPORTED, "%s has no gradient", def->name);
    if (!tg_shape_equal(grad_out, &call->out) || grad_out->dtype != call->out.dtype) {
        char a[96], b[96];
        return tg_error(TG_STATUS_SHAPE, "%s backward: grad_output has shape %s %s, the output has %s %s", def->name,
                        tg_shape_str(grad_out, a, sizeof a), tg_dtype_name(grad_out->dtype),
                        tg_shape_str(&call->out, b, sizeof b), tg_dtype_name(call->out.dtype));
    }
    tg_status status = TG_STATUS_OK;
    for (int i = 0; i < call->n_in; i++) {
        grad_ptrs[i] = NULL;
        int differentiable = call->in[i] && !(i < 64 && (def->no_grad_inputs >> i & 1u));
        if (!want[i] || !differentiable) continue;
        status = tg_tensor_init(&grad_in[i], call->in[i]->dtype, call->in[i]->ndim, call->in[i]->shape);
        if (status != TG_STATUS_OK) break;
        grad_ptrs[i] = &grad_in[i];
    }
    void *scratch = NULL;
    if (status == TG_STATUS_OK && call->sizes.scratch_backward) {
        scratch = tg_aligned_alloc(call->sizes.scratch_backward);
        if (!scratch) status = tg_error(TG_STATUS_NOMEM, "%s backward: out of memory for scratch", def->name);
    }
    if (status == TG_STATUS_OK) {
        tg_op_io io = {
            .def = def, .attrs = call->attrs, .in = call->in, .n_in = call->n_in, .out = &call->out,
            .aux = call->aux, .scratch = scratch, .training = call->training, .seed = call->seed,
            .grad_out = grad_out, .grad_in = grad_ptrs,
        };
        status = def->backward(&io);
    }
    tg_aligned_free(scratch);
    if (status != TG_STATUS_OK)
        for (int i = 0; i < call->n_in; i++) tg_tensor_free(&grad_in[i]);
    return status;
}

void tg_op_call_free(tg_op_call *call)
{
    tg_tensor_free(&call->out);
    tg_aligned_free(call->aux);
    call->aux = NULL;
}
