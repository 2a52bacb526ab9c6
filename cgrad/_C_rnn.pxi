# Recurrent layers: the entry points of csrc/rnn.c.
