/* anomaly.c: anomaly mode (cgrad.autograd.detect_anomaly).
 *
 * While it is on, cg_record checks every op's output, the backward sweep every gradient a
 * rule wrote, and a replayed step every op's output, for NaN and Inf; the first one found
 * is a CG_ERR_RUNTIME whose message starts with "anomaly:". Its node id (cg_node_id_of,
 * -1 when it names none) is kept beside the message for the binding: cg_anomaly_node().
 * Nodes get ids while anomaly mode or the profiler is on.
 */
#include "cg_internal.h"

int cg_anomaly_on;
static _Thread_local int64_t anomaly_node = -1;

void cg_set_anomaly(int enabled) { __atomic_store_n(&cg_anomaly_on, enabled != 0, __ATOMIC_RELEASE); }
int64_t cg_anomaly_node(void) { return anomaly_node; }
int64_t cg_node_id_of(const cg_tensor *t) { return t->node ? t->node->id : -1; }

cg_status cg_anomaly_error(int64_t node_id, const char *fmt, ...) {
    anomaly_node = node_id;
    va_list ap;
    va_start(ap, fmt);
    cg_status st = cg_verror(CG_ERR_RUNTIME, fmt, ap);
    va_end(ap);
    return st;
}

int64_t cg_first_nonfinite(cg_dtype dtype, const void *data, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double v = dtype == CG_F32 ? ((const float *)data)[i] : ((const double *)data)[i];
        if (v - v != 0) return i; /* NaN or +-Inf */
    }
    return -1;
}
