#define _POSIX_C_SOURCE 199309L /* clock_gettime */
/* profile.c: the profiler: per-node timing and allocation events, node ids, scopes.
 *
 * When profiling is off, an op pays one predictable branch at entry and one in cg_record.
 * When on, each op's forward, each node's backward rule, the two GEMMs of a linear or
 * matmul backward, and each whole backward call append an event (monotonic ns) to a buffer
 * allocated when profiling starts; past its capacity events are counted as dropped. */
#include "cg_internal.h"

#include <stdlib.h>
#include <time.h>

int cg_prof_on;
static cg_prof_event *events;
static int64_t capacity, count, dropped;
static int64_t next_node_id;
static _Thread_local int32_t scope;
_Thread_local uint64_t cg_prof_t0;
_Thread_local int64_t cg_prof_bytes0;

uint64_t cg_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

cg_status cg_profile_start(int64_t cap) {
    if (cap < 1) return cg_error(CG_ERR_VALUE, "profile: capacity must be at least 1");
    cg_prof_event *buf = malloc((size_t)cap * sizeof *buf);
    if (!buf) return cg_error(CG_ERR_NOMEM, "profile: out of memory for %lld events", (long long)cap);
    free(events);
    events = buf;
    capacity = cap;
    count = dropped = 0;
    __atomic_store_n(&cg_prof_on, 1, __ATOMIC_RELEASE);
    return CG_OK;
}

void cg_profile_stop(void) { __atomic_store_n(&cg_prof_on, 0, __ATOMIC_RELEASE); }

void cg_profile_clear(void) {
    cg_profile_stop();
    free(events);
    events = NULL;
    capacity = count = dropped = 0;
}

const cg_prof_event *cg_profile_events(int64_t *n, int64_t *n_dropped) {
    *n = count < capacity ? count : capacity;
    *n_dropped = dropped;
    return events;
}

void cg_profile_set_scope(int32_t s) { scope = s; }
int32_t cg_profile_scope(void) { return scope; }
int64_t cg_profile_new_node_id(void) { return __atomic_add_fetch(&next_node_id, 1, __ATOMIC_RELAXED); }

void cg_prof_event_add(int op, int phase, int64_t node, int32_t sc, uint64_t t0, uint64_t t1, double flops,
                       int64_t bytes) {
    int64_t i = __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED);
    if (i >= capacity || !events) {
        __atomic_fetch_add(&dropped, 1, __ATOMIC_RELAXED);
        return;
    }
    events[i] = (cg_prof_event){t0, t1, node, flops, bytes, op, phase, sc};
}
