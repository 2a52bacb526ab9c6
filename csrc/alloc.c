/* alloc.c: the core's one counting allocator (docs/architecture.md, "Memory").
 *
 * Every byte the core holds for tensors, storages, tape nodes and gradient buffers comes
 * from cg_malloc and goes back through cg_free, so cg_live_bytes() is exact: the tests
 * check that each one gives back all it took. cg_malloc returns NULL on failure and never
 * reports it: the caller names the op in its cg_error. Scratch memory that is not tensor
 * memory (sort stacks, the profiler's buffer, programs) uses plain malloc.
 */
#include "cg_internal.h"

#include <pthread.h>
#include <stdlib.h>

/* A 16-byte header keeps the size so frees can be counted.
 * Blocks are recycled through per-thread caches, so that a training loop of fixed shapes
 * reaches a steady state where the core makes no malloc calls at all:
 *  - small blocks (tensor headers, tape nodes, small buffers) by 64-byte size class: an op
 *    allocates and frees several, and malloc's bookkeeping was a sixth of a recorded op;
 *  - larger buffers (activations, gradients) by exact rounded size, up to a byte budget:
 *    reusing them also saves the page faults of fresh large allocations every step.
 * Cached blocks do not count as live. */
#define CG_HDR 16
#define SMALL_CLASSES 8          /* up to 512 bytes */
#define SMALL_KEEP 64            /* blocks kept per class per thread */
#define LARGE_KEEP 1024          /* large blocks kept per thread */
#define LARGE_BUDGET (256 << 20) /* bytes of large blocks kept per thread */
static int64_t live_bytes;
static int64_t alloc_count;
static int64_t fresh_count;      /* calls that reached malloc */
int64_t cg_allocated_total;      /* every byte ever handed out, for the profiler */

typedef struct {
    void *blocks[SMALL_KEEP];
    int n;
} small_cache;
typedef struct {
    small_cache small[SMALL_CLASSES];
    void *large[LARGE_KEEP];
    size_t large_size[LARGE_KEEP];
    int n_large;
    size_t large_bytes;
} block_cache;
/* One pointer of initial-exec TLS (CG_TLS_FAST); the caches themselves are on the heap
 * and go back to malloc when the thread exits. */
static CG_TLS_FAST block_cache *tcache;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_free(void *p) {
    block_cache *c = p;
    for (int k = 0; k < SMALL_CLASSES; k++)
        for (int i = 0; i < c->small[k].n; i++) free(c->small[k].blocks[i]);
    for (int i = 0; i < c->n_large; i++) free(c->large[i]);
    free(c);
}
static void cache_key_init(void) { pthread_key_create(&cache_key, cache_free); }

static block_cache *cache(void) {
    if (!tcache) {
        pthread_once(&cache_once, cache_key_init);
        if ((tcache = calloc(1, sizeof *tcache))) pthread_setspecific(cache_key, tcache);
    }
    return tcache;
}

static inline int small_class(size_t nbytes) {
    return nbytes <= SMALL_CLASSES * 64 ? (int)((nbytes + 63) / 64) - (nbytes > 0) : -1;
}

/* The capacity a request gets: its class, or 4 KiB pages for large buffers (so that
 * shapes that differ a little share blocks). */
static inline size_t block_capacity(size_t nbytes) {
    int cls = small_class(nbytes);
    return cls >= 0 ? (size_t)(cls + 1) * 64 : (nbytes + 4095) & ~(size_t)4095;
}

static unsigned char *cache_take(block_cache *c, size_t nbytes) {
    int cls = small_class(nbytes);
    if (cls >= 0) return c->small[cls].n ? c->small[cls].blocks[--c->small[cls].n] : NULL;
    size_t cap = block_capacity(nbytes);
    for (int i = c->n_large - 1; i >= 0; i--)
        if (c->large_size[i] == cap) {
            unsigned char *p = c->large[i];
            c->large_bytes -= cap;
            c->n_large--;
            c->large[i] = c->large[c->n_large];
            c->large_size[i] = c->large_size[c->n_large];
            return p;
        }
    return NULL;
}

static int cache_give(block_cache *c, unsigned char *base, size_t nbytes) {
    int cls = small_class(nbytes);
    if (cls >= 0) {
        if (c->small[cls].n == SMALL_KEEP) return 0;
        c->small[cls].blocks[c->small[cls].n++] = base;
        return 1;
    }
    size_t cap = block_capacity(nbytes);
    if (cap > LARGE_BUDGET) return 0;
    while (c->n_large && (c->n_large == LARGE_KEEP || c->large_bytes + cap > LARGE_BUDGET)) {
        c->n_large--; /* make room: drop the oldest */
        c->large_bytes -= c->large_size[0];
        free(c->large[0]);
        c->large[0] = c->large[c->n_large];
        c->large_size[0] = c->large_size[c->n_large];
    }
    c->large[c->n_large] = base;
    c->large_size[c->n_large++] = cap;
    c->large_bytes += cap;
    return 1;
}

void *cg_malloc(size_t nbytes) {
    if (nbytes > ((size_t)1 << 60)) return NULL;
    block_cache *c = cache();
    unsigned char *p = c ? cache_take(c, nbytes) : NULL;
    if (!p) {
        if (!(p = malloc(block_capacity(nbytes) + CG_HDR))) return NULL;
        __atomic_add_fetch(&fresh_count, 1, __ATOMIC_RELAXED);
    }
    *(size_t *)p = nbytes;
    __atomic_add_fetch(&live_bytes, (int64_t)nbytes, __ATOMIC_RELAXED);
    __atomic_add_fetch(&alloc_count, 1, __ATOMIC_RELAXED);
    if (cg_prof_on) __atomic_add_fetch(&cg_allocated_total, (int64_t)nbytes, __ATOMIC_RELAXED);
    return p + CG_HDR;
}

void cg_free(void *p) {
    if (!p) return;
    unsigned char *base = (unsigned char *)p - CG_HDR;
    size_t nbytes = *(size_t *)base;
    __atomic_sub_fetch(&live_bytes, (int64_t)nbytes, __ATOMIC_RELAXED);
    block_cache *c = cache();
    if (!c || !cache_give(c, base, nbytes)) free(base);
}

int64_t cg_fresh_alloc_count(void) { return __atomic_load_n(&fresh_count, __ATOMIC_RELAXED); }

int64_t cg_live_bytes(void) { return __atomic_load_n(&live_bytes, __ATOMIC_RELAXED); }
int64_t cg_alloc_count(void) { return __atomic_load_n(&alloc_count, __ATOMIC_RELAXED); }
