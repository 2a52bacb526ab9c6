# Normalisation: the entry points of csrc/norm.c.
