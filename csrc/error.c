/* error.c: error reporting (docs/architecture.md, "Errors").
 *
 * The core never prints, exits or aborts. A failing function calls cg_error, which keeps
 * the message in a thread-local buffer and returns the status; the binding reads it with
 * cg_last_error() and raises the matching Python exception. Messages name the op and the
 * shapes involved. Anomaly errors also leave the node they name (anomaly.c).
 */
#include "cg_internal.h"

#include <stdio.h>

static _Thread_local char err_msg[512];

const char *cg_last_error(void) { return err_msg; }

cg_status cg_verror(cg_status status, const char *fmt, va_list ap) {
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    return status;
}

cg_status cg_error(cg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cg_verror(status, fmt, ap);
    va_end(ap);
    return status;
}

const char *cg_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, ndim == 1 ? ",)" : ")");
    return buf;
}

cg_status cg_same_dtype(const char *op, const cg_tensor *a, const cg_tensor *b) {
    if (a->dtype == b->dtype) return CG_OK;
    return cg_error(CG_ERR_DTYPE, "%s: dtypes %s and %s differ; convert one with .float() or .double()", op,
                    cg_dtype_name(a->dtype), cg_dtype_name(b->dtype));
}

cg_status cg_float_only(const char *op, const cg_tensor *t) {
    char b1[CG_SHAPE_BUF];
    return cg_error(CG_ERR_DTYPE, "%s: needs a float32 or float64 tensor, got %s of shape %s; convert it "
                                  "with .float() first", op, cg_dtype_name(t->dtype),
                    cg_shape_str(t->ndim, t->shape, b1, sizeof b1));
}
