# Embedding and the sequence losses: the entry points of csrc/embedding.c and loss.c's additions.
