"""SAM 3's click tracker (``Sam3TrackerModel``): SAM 2.1's point/box prompting on SAM 3's image encoder.

Its API is SAM 2's (``get_image_embeddings``, then prompts decoded on the embedding), so the
loaded model is a `families.sam2.Sam2Bundle`: the Segment tab's clicks, undo, candidates,
exports and segment-everything work unchanged. The checkpoint is SAM 3's release (its tracker
part), under the SAM License, gated.

Offline: ``random`` builds the release's tracker at real size (458 M parameters, 1008 px);
``tiny`` a shrunken one (112 px, 128 wide).
"""

from __future__ import annotations

from typing import Any

from model_loaders.core.availability import LoadSettings
from model_loaders.core.hub import hub_errors, pretrained_kwargs
from model_loaders.core.specs import ModelSpec
from model_loaders.families.sam2 import Sam2Bundle

WIDTH = 128  # the tiny tracker's width (its mask decoder splits it into 64-wide pieces)


def offline_parts(spec: ModelSpec, tiny: bool) -> tuple[Any, Any]:
    """(``Sam3TrackerConfig``, processor) built in code: the release's architecture or a shrunken one."""
    from transformers import (
        Sam2ImageProcessor,
        Sam3TrackerConfig,
        Sam3TrackerMaskDecoderConfig,
        Sam3TrackerProcessor,
        Sam3TrackerPromptEncoderConfig,
        Sam3VisionConfig,
    )

    from model_loaders.families import sam3
    from model_loaders.families.detectors import clip_like_tokenizer

    if tiny:
        tok = clip_like_tokenizer()
        size, side = sam3.TINY_IMAGE_SIZE, sam3.TINY_IMAGE_SIZE // 14
        backbone = sam3.tiny_config(len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id,
                                    width=WIDTH).vision_config.backbone_config  # fmt: skip
        vision = Sam3VisionConfig(backbone_config=backbone, fpn_hidden_size=WIDTH,
                                  backbone_feature_sizes=[[side * 4, side * 4], [side * 2, side * 2], [side, side]])  # fmt: skip
        config = Sam3TrackerConfig(
            vision_config=vision,
            prompt_encoder_config=Sam3TrackerPromptEncoderConfig(hidden_size=WIDTH, image_size=size, patch_size=14,
                                                                 mask_input_channels=4),  # fmt: skip
            mask_decoder_config=Sam3TrackerMaskDecoderConfig(hidden_size=WIDTH, mlp_dim=64, num_hidden_layers=1,
                                                             num_attention_heads=2, iou_head_hidden_dim=32),  # fmt: skip
        )
    else:
        config, size = Sam3TrackerConfig(), sam3.REAL_IMAGE_SIZE  # the defaults are the released tracker's
    image = Sam2ImageProcessor(size={"height": size, "width": size}, mask_size={"height": size // 4, "width": size // 4})
    return config, Sam3TrackerProcessor(image_processor=image)


def architecture(spec: ModelSpec, tiny: bool = False) -> Any:
    """The release's tracker (real size), or the shrunken one."""
    from transformers import Sam3TrackerModel

    return Sam3TrackerModel(offline_parts(spec, tiny)[0])


def load(spec: ModelSpec, settings: LoadSettings) -> Sam2Bundle:
    """Build SAM 3's tracker and processor for ``spec`` (a ``Segmenter``, like SAM 2.1's)."""
    import torch
    from transformers import Sam3TrackerModel, Sam3TrackerProcessor

    dtype = getattr(torch, settings.dtype_name(spec))
    if settings.weights == "hub":
        with hub_errors(spec):
            model = Sam3TrackerModel.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec), dtype=dtype)
            processor = Sam3TrackerProcessor.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec))
    else:
        config, processor = offline_parts(spec, tiny=settings.weights == "tiny")
        torch.manual_seed(0)
        model = Sam3TrackerModel(config).to(dtype)
    model = model.to(settings.device).eval()
    return Sam2Bundle(model=model, processor=processor, key=spec.key, device=settings.device)
