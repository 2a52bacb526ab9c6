/* ops.c: the op registry (ops.def) expanded into cg_ops, the one table the core looks an
 * op up in: its name, family, backward rule, replay function, what the rule reads and
 * whether it writes fresh buffers. Entries are placed by op code (designated
 * initializers), so no table can be out of order with the enum: both come from ops.def. */
#include "cg_internal.h"

#include <math.h>

const cg_op_info cg_ops[CG_OP_COUNT] = {
#define CG_UNARY(NAME, name, reads, ...) [CG_OP_##NAME] = {#name, "unary", cg_unary_bwd, cg_unary_replay, reads, WRITES},
#define CG_BINARY(NAME, name, reads, ...) [CG_OP_##NAME] = {#name, "binary", cg_binary_bwd, cg_binary_replay, reads, WRITES},
#define CG_OP(NAME, name, family, reads, first_write)                                          \
    [CG_OP_##NAME] = {#name, #family, cg_##family##_bwd, cg_##family##_replay, reads, first_write},
#include "ops.def"
};

static int is_op(int op) { return op >= 0 && op < CG_OP_COUNT; }
const char *cg_op_name(int op) { return is_op(op) ? cg_ops[op].name : "?"; }
const char *cg_op_family(int op) { return is_op(op) ? cg_ops[op].family : "?"; }
int cg_op_reads(int op) { return is_op(op) ? cg_ops[op].reads : 0; }

/* Multiply-adds x 2 of a GEMM-based op, for the profiler's GFLOP/s; 0 for the others. */
double cg_op_flops(int op, cg_tensor *const *inputs, int64_t out_numel) {
    if (op == CG_OP_MATMUL) return 2.0 * (double)out_numel * (double)inputs[0]->shape[inputs[0]->ndim - 1];
    if (op == CG_OP_LINEAR) return 2.0 * (double)out_numel * (double)inputs[1]->shape[1];
    if (op == CG_OP_CONV) return 2.0 * (double)out_numel * (double)(inputs[1]->numel / inputs[1]->shape[0]);
    if (op == CG_OP_GEMM && out_numel > 0) /* m k * k n / (m n) = k^2, whichever operand is transposed */
        return 2.0 * (double)out_numel * sqrt((double)inputs[0]->numel * (double)inputs[1]->numel / (double)out_numel);
    return 0;
}
