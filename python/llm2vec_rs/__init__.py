"""llm2vec_rs: LLM2Vec text encoders (decoder-only LLMs with bidirectional attention) running in native Rust.

    from llm2vec_rs import LLM2Vec

    model = LLM2Vec.from_pretrained("smollm2-135m-instruct")
    q = model.encode([["Given a web search query, retrieve relevant passages that answer the query:",
                       "summit define"]])
    d = model.encode(["Definition of summit for English Language Learners. ..."])

`llm2vec_rs.mteb.MTEBModel` wraps a model for mteb. See docs/python.md for the API and how it differs from the
reference package (llm2vec 0.2.3).
"""

from ._native import (
    CPU_MAX_BATCH_TOKENS,
    DEFAULT_DOC_MAX_LENGTH,
    DEFAULT_MAX_LENGTH,
    GPU_MAX_BATCH_TOKENS,
    POOLING_MODES,
    __version__,
    evaluate,
    set_num_threads,
)
from .encoder import LLM2Vec

__all__ = [
    "LLM2Vec",
    "evaluate",
    "set_num_threads",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_DOC_MAX_LENGTH",
    "CPU_MAX_BATCH_TOKENS",
    "GPU_MAX_BATCH_TOKENS",
    "POOLING_MODES",
    "__version__",
]
