# Attention: the entry points of csrc/attention.c.
