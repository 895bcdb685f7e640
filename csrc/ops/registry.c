/* registry.c: the table of every op, built from op_list.h. */
#include <string.h>

#include "op.h"

#define TG_OP(name) extern const tg_op_def tg_op_##name;
#include "op_list.h"
#undef TG_OP

static const tg_op_def *const op_table[] = {
#define TG_OP(name) &tg_op_##name,
#include "op_list.h"
#undef TG_OP
};

int tg_op_count(void) { return (int)(sizeof op_table / sizeof op_table[0]); }

const tg_op_def *tg_op_at(int index)
{
    return index >= 0 && index < tg_op_count() ? op_table[index] : NULL;
}

const tg_op_def *tg_op_find(const char *name)
{
    for (int i = 0; i < tg_op_count(); i++)
        if (strcmp(op_table[i]->name, name) == 0) return op_table[i];
    return NULL;
}
