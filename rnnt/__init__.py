"""rnnt: a streaming RNN-Transducer speech recognition toolkit.

The modules read as the pipeline: config -> features -> tokenizer -> data -> model ->
loss -> training -> decoding -> streaming -> export / runtimes.
"""

__version__ = "0.1.0"
