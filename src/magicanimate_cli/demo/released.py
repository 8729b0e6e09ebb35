"""SD 1.5's released JSON files that no tensor shape depends on, byte for byte as the Hub serves them.

The tiny bundle (tests/data/tiny-bundle and `build_tiny_weights`) carries these exact files, so the tests read
what users have: the scheduler config is SD 1.5's PNDM one (MagicAnimate samples with its own DDIM and training
noises with that DDIM's schedule, neither reads this file), model_index.json lists the full pipeline, and the
tokenizer files give their special tokens as AddedToken objects. Sizes match docs/download-weights.md (308, 541,
472 and 806 bytes). Files whose contents set tensor shapes (the networks' config.json, the vocabulary) cannot be
the release's in a tiny bundle; docs/development.md lists them.
"""

from __future__ import annotations

import json

SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "clip_sample": False,
}

MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.6.0",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def _token(content: str, typed: bool = False) -> dict:
    """A special token as the tokenizer files store it (tokenizer_config.json marks its type)."""
    return {**({"__type": "AddedToken"} if typed else {}), "content": content, "lstrip": False, "normalized": True,
            "rstrip": False, "single_word": False}


SPECIAL_TOKENS_MAP = {"bos_token": _token("<|startoftext|>"), "eos_token": _token("<|endoftext|>"),
                      "pad_token": "<|endoftext|>", "unk_token": _token("<|endoftext|>")}

TOKENIZER_CONFIG = {
    "add_prefix_space": False, "bos_token": _token("<|startoftext|>", True), "do_lower_case": True,
    "eos_token": _token("<|endoftext|>", True), "errors": "replace", "model_max_length": 77,
    "name_or_path": "openai/clip-vit-large-patch14", "pad_token": "<|endoftext|>",
    "special_tokens_map_file": "./special_tokens_map.json", "tokenizer_class": "CLIPTokenizer",
    "unk_token": _token("<|endoftext|>", True),
}

FILES = {
    "scheduler/scheduler_config.json": SCHEDULER_CONFIG,
    "model_index.json": MODEL_INDEX,
    "tokenizer/special_tokens_map.json": SPECIAL_TOKENS_MAP,
    "tokenizer/tokenizer_config.json": TOKENIZER_CONFIG,
}
"""Path under stable-diffusion-v1-5/ -> contents."""


def file_text(contents: dict) -> str:
    """The file's bytes as the Hub serves them: two-space indent, keys in the release's order, a final newline."""
    return json.dumps(contents, indent=2) + "\n"
