"""`LLM2Vec`: the reference package's `from_pretrained` / `encode` API over the native Rust encoder."""

import os
import warnings

from . import _native
from ._progress import progress_bar


class LLM2Vec:
    """A decoder-only LLM used as a text encoder: bidirectional attention, LoRA adapters merged in, mean (or
    other) pooling over the text tokens only; an instruction is attended to but not pooled."""

    def __init__(self, encoder):
        """Wraps a loaded `llm2vec_rs._native.Encoder`; use `LLM2Vec.from_pretrained` to load one."""
        self._encoder = encoder

    @classmethod
    def from_pretrained(
        cls,
        base_model_name_or_path,
        peft_model_name_or_path=None,
        *,
        pooling_mode=None,
        max_length=None,
        doc_max_length=None,
        skip_instruction=None,
        enable_bidirectional=True,
        device="cpu",
        dtype="float32",
        torch_dtype=None,
        max_batch_tokens=None,
    ):
        """Loads a model: a short name (`smollm2-135m-instruct`), a Hugging Face directory, a `.gguf` file or a
        hub id in the local Hugging Face cache. `peft_model_name_or_path` is one PEFT LoRA directory or a list of
        them, merged in order. Settings left at None come from the last adapter's (else the model's)
        `llm2vec_config.json`, then the defaults: mean pooling (of `POOLING_MODES`), `DEFAULT_MAX_LENGTH` and
        `DEFAULT_DOC_MAX_LENGTH` tokens, instruction skipped. `dtype` (or the reference's `torch_dtype`, a torch dtype or its name): float32, bfloat16,
        float16, or q8 (integer products in the linear layers on the CPU: 8-bit weights with 16-bit activations, 8-bit on VNNI (AVX-512 VNNI or AVX-VNNI), or 4-bit weights kept as read with 8-bit activations). `device`: "cpu", "cuda" or "cuda:N" (CUDA needs a build with the `cuda` feature).
        `max_batch_tokens`: padded tokens (inputs times the longest) per forward pass, at most, besides `encode`'s
        `batch_size` (default `CPU_MAX_BATCH_TOKENS`, 2048, on the CPU, `GPU_MAX_BATCH_TOKENS`, 32 inputs of 512
        tokens, on a GPU); longer inputs go in smaller batches.
        """
        encoder = _native.Encoder(
            os.fspath(base_model_name_or_path),
            adapters=_adapter_paths(peft_model_name_or_path),
            pooling=pooling_mode,
            max_length=max_length,
            doc_max_length=doc_max_length,
            skip_instruction=skip_instruction,
            bidirectional=enable_bidirectional,
            dtype=str(dtype if torch_dtype is None else torch_dtype),
            device=str(device),
            max_batch_tokens=max_batch_tokens,
        )
        return cls(encoder)

    @property
    def pooling_mode(self):
        return self._encoder.pooling_mode

    @property
    def max_length(self):
        return self._encoder.max_length

    @property
    def doc_max_length(self):
        return self._encoder.doc_max_length

    @property
    def max_batch_tokens(self):
        return self._encoder.max_batch_tokens

    @property
    def skip_instruction(self):
        return self._encoder.skip_instruction

    @property
    def enable_bidirectional(self):
        return self._encoder.bidirectional

    @property
    def dim(self):
        """Embedding width."""
        return self._encoder.dim

    @property
    def model_type(self):
        return self._encoder.model_type

    @property
    def precision(self):
        """The number format: `f32`, `bf16`, `f16`, or `q8` (8-bit linear layers)."""
        return self._encoder.precision

    @property
    def device(self):
        """`cpu` or `cuda:N`."""
        return self._encoder.device

    def encode(
        self,
        sentences,
        batch_size=32,
        show_progress_bar=True,
        convert_to_numpy=True,
        convert_to_tensor=False,
        normalize=False,
    ):
        """Embeds `sentences`: a string (one text), or a list whose items are strings, `[instruction, text]`
        pairs or the reference's `[instruction, text, 0]` triples. Returns a float32 array of shape
        `[len(sentences), dim]`, rows in input order; a torch tensor when `convert_to_tensor` is true or
        `convert_to_numpy` false (torch must be installed). `normalize` scales rows to unit L2 norm.
        The GIL is released while encoding; Ctrl-C stops the encode after the current batch.
        """
        pairs = as_pairs(sentences)
        bar = progress_bar(len(pairs)) if show_progress_bar and pairs else None
        try:
            array, truncated = self._encoder.encode(pairs, batch_size=batch_size, normalize=normalize, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        if truncated:
            warnings.warn(
                f"{len(truncated)} input(s) longer than max_length {self.max_length} were truncated "
                f"(first: index {truncated[0]})",
                stacklevel=2,
            )
        if convert_to_tensor or not convert_to_numpy:
            return _to_torch(array)
        return array

    def token_counts(self, sentences):
        """The number of tokens each input (the forms `encode` takes) runs through the model, after truncation:
        a way to group inputs into batches by a token budget."""
        return self._encoder.token_counts(as_pairs(sentences))

    def __repr__(self):
        return (
            f"LLM2Vec(model_type={self.model_type!r}, dim={self.dim}, pooling_mode={self.pooling_mode!r}, "
            f"max_length={self.max_length}, doc_max_length={self.doc_max_length}, "
            f"skip_instruction={self.skip_instruction}, enable_bidirectional={self.enable_bidirectional}, "
            f"precision={self.precision!r}, device={self.device!r})"
        )


def as_pairs(sentences):
    """`encode`'s input as a list of `(instruction, text)` tuples. A bare string is one text (the reference
    encodes it character by character); a bare `[instruction, text, 0]` triple is one input, as in the reference."""
    if isinstance(sentences, str):
        return [("", sentences)]
    if _is_triple(sentences):
        return [_pair(sentences, 0)]
    return [_pair(item, i) for i, item in enumerate(sentences)]


def _is_triple(item):
    return isinstance(item, (list, tuple)) and len(item) == 3 and _is_pair_or_triple(item)


def _is_pair_or_triple(item):
    texts_ok = len(item) in (2, 3) and isinstance(item[0], str) and isinstance(item[1], str)
    return texts_ok and (len(item) == 2 or isinstance(item[2], int))


def _pair(item, index):
    if isinstance(item, str):
        return ("", item)
    if isinstance(item, (list, tuple)) and _is_pair_or_triple(item):
        return (item[0], item[1])
    raise TypeError(
        f"input {index + 1}: expected a string, [instruction, text] or [instruction, text, 0], got {item!r:.80}"
    )


def _adapter_paths(peft):
    if peft is None:
        return []
    if isinstance(peft, (str, os.PathLike)):
        return [os.fspath(peft)]
    return [os.fspath(p) for p in peft]


def _to_torch(array):
    try:
        import torch
    except ImportError as e:
        raise ImportError("a torch tensor was asked for (convert_to_tensor=True or convert_to_numpy=False) "
                          "but torch is not installed") from e
    return torch.from_numpy(array)
