# Pooling: the entry points of csrc/pool.c.
