/* op_list.h: the op table, one row per op: TG_OP(name) registers tg_op_<name>,
 * defined in the family file beside its kernels. Included by registry.c only. */
TG_OP(relu)
TG_OP(add)
/* linalg (linalg.c) */
TG_OP(linear)
TG_OP(matmul)
