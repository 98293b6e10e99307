"""`TextEncoder`: a CLIP text encoder and its tokenizer, for decoders conditioned on a caption.

A text-encoder bundle is laid out as in a diffusers pipeline (Stable Diffusion 2.1's
`tokenizer/` and `text_encoder/` folders side by side):

    tokenizer/vocab.json             byte-level BPE vocabulary
    tokenizer/merges.txt             its merges
    tokenizer/tokenizer_config.json  optional: the padding token (SD 2.x pads with "!")
    text_encoder/config.json         a transformers CLIPTextConfig
    text_encoder/model.safetensors   its weights, loaded strictly

The tokenizer is built from those files directly and the weights through `load_exact`, so
nothing is fetched, no code from the bundle runs and no pickle is read. The output is the
encoder's last hidden state (N x max_tokens x hidden), what SD 2.1's UNet cross-attends to
(its published encoder already stops at the penultimate OpenCLIP layer).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import WeightsError
from ..weights import load_exact, load_safetensors

# Published files (saved by transformers 4) name every tensor under this prefix, which
# transformers 5's CLIPTextModel drops; some also carry the position ids, a fixed arange
# rather than a weight, kept only where the installed model holds it.
PUBLISHED_PREFIX = "text_model."
LEGACY_KEYS = ("embeddings.position_ids",)


class TextEncoder:
    def __init__(self, tokenizer, model: torch.nn.Module):
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.max_tokens = int(model.config.max_position_embeddings)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """N x max_tokens x hidden; longer texts are cut at max_tokens tokens, as the pipelines do."""
        tokens = self.tokenizer(texts, padding="max_length", max_length=self.max_tokens, truncation=True, return_tensors="pt")
        return self.model(input_ids=tokens.input_ids.to(self.device)).last_hidden_state

    @classmethod
    def from_pretrained(cls, directory: Path | str, *, device: str | torch.device = "cpu") -> "TextEncoder":
        from transformers import CLIPTextConfig, CLIPTextModel

        directory = Path(directory)
        tokenizer = _tokenizer(directory / "tokenizer")
        config_path = directory / "text_encoder" / "config.json"
        try:
            config = CLIPTextConfig.from_dict(json.loads(config_path.read_text()))
        except (OSError, ValueError, TypeError) as error:
            raise WeightsError(f"{config_path}: not a readable CLIP text-encoder config ({error})") from None
        if config.vocab_size != len(tokenizer):
            raise WeightsError(f"{directory}: the text encoder has {config.vocab_size} tokens, the tokenizer {len(tokenizer)}")
        model = CLIPTextModel(config)
        weights_path = directory / "text_encoder" / "model.safetensors"
        load_exact(model, _named_as_in(model, load_safetensors(weights_path)), str(weights_path))
        return cls(tokenizer, model.to(device))


def _named_as_in(model: torch.nn.Module, state: dict) -> dict:
    """`state` named as the installed transformers names the model's tensors (prefix or not),
    less the legacy buffers the model does not hold."""
    expected = set(model.state_dict())
    prefix = PUBLISHED_PREFIX if any(key.startswith(PUBLISHED_PREFIX) for key in expected) else ""
    renamed = {prefix + key.removeprefix(PUBLISHED_PREFIX): value for key, value in state.items()}
    return {key: value for key, value in renamed.items() if key in expected or key.removeprefix(PUBLISHED_PREFIX) not in LEGACY_KEYS}


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    try:
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        options = json.loads((folder / "tokenizer_config.json").read_text()) if (folder / "tokenizer_config.json").is_file() else {}
    except (OSError, ValueError) as error:
        raise WeightsError(f"{folder}: not a readable CLIP tokenizer ({error})") from None
    if not isinstance(vocab, dict) or not all(isinstance(k, str) and type(v) is int for k, v in vocab.items()):
        raise WeightsError(f"{folder / 'vocab.json'}: the vocabulary must map strings to token ids")
    merges = [line for line in lines if line and not line.startswith("#version")]
    if not all(len(line.split(" ")) == 2 for line in merges):
        raise WeightsError(f"{folder / 'merges.txt'}: each merge is two symbols separated by a space")
    pad = options.get("pad_token", "<|endoftext|>") if isinstance(options, dict) else "<|endoftext|>"
    pad = pad.get("content") if isinstance(pad, dict) else pad
    if not isinstance(pad, str) or pad not in vocab:
        raise WeightsError(f"{folder}: the padding token {pad!r} is not in the vocabulary")
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token=pad)
