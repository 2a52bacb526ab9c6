# Convolution: the entry points of csrc/conv.c.
