"""Transformers detectors: closed-set (RF-DETR, D-FINE, RT-DETRv2) and open-vocabulary (OWLv2, Grounding DINO).

Families ``hf_detector`` and ``zero_shot_detector``. One code path per family; only the source
of the weights differs (``hub`` checkpoint, ``random`` real-size config, ``tiny`` shrunken
config). Random/tiny open-vocabulary processors need a tokenizer: a small one is built offline
with the ``tokenizers`` library, with the token ids the models expect.

``DetectorBundle.detect`` (the ``Detector`` protocol) runs the model once and returns the *raw*
detections (every box at or above ``RAW_FLOOR``, best ``RAW_TOP_K``) in working-image pixels;
filtering by the user's thresholds happens in the task layer without running the model again.

The architecture comes from the spec's ``variant``, ``"<arch>:<size>"`` (``rf_detr:medium``,
``d_fine:x``, ``rt_detr_v2:r18``, ``owlv2:base``, ``grounding_dino:tiny``); real-size configs
follow the published checkpoints' ``config.json`` (vocabularies included, so parameter counts and
compute match), and an unknown variant is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_loaders.core.availability import LoadSettings
from model_loaders.core.detections import COCO_CLASSES, RAW_FLOOR, RAW_TOP_K, keep_top, make_detections
from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.hub import hub_errors, pretrained_kwargs
from model_loaders.core.results import Timings
from model_loaders.core.specs import ModelSpec

log = logging.getLogger(__name__)

# RF-DETR sizes (upstream rfdetr model configs): resolution, decoder layers.
_RFDETR = {"nano": (384, 2), "small": (512, 3), "medium": (576, 4), "large": (704, 4)}
# D-FINE sizes (the published dfine_{n,s,m,l,x}_coco configs): backbone (HGNetV2) and head fields
# that differ from the library's defaults.
_DFINE: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "n": (
        {"hidden_sizes": [128, 256, 512, 1024], "stem_channels": [3, 16, 16], "stage_in_channels": [16, 64, 256, 512],
         "stage_mid_channels": [16, 32, 64, 128], "stage_out_channels": [64, 256, 512, 1024],
         "stage_num_blocks": [1, 1, 2, 1], "stage_numb_of_layers": [3, 3, 3, 3], "out_indices": [3, 4]},
        {"num_feature_levels": 2, "encoder_ffn_dim": 512, "encode_proj_layers": [1], "d_model": 128,
         "encoder_hidden_dim": 128, "decoder_ffn_dim": 512, "encoder_in_channels": [512, 1024],
         "decoder_n_points": [6, 6], "decoder_in_channels": [128, 128], "feat_strides": [16, 32],
         "depth_mult": 0.5, "decoder_layers": 3, "hidden_expansion": 0.34},
    ),
    "s": (
        {"hidden_sizes": [128, 256, 512, 1024], "stem_channels": [3, 16, 16], "stage_in_channels": [16, 64, 256, 512],
         "stage_mid_channels": [16, 32, 64, 128], "stage_out_channels": [64, 256, 512, 1024],
         "stage_num_blocks": [1, 1, 2, 1], "stage_numb_of_layers": [3, 3, 3, 3]},
        {"decoder_layers": 3, "hidden_expansion": 0.5, "depth_mult": 0.34, "decoder_n_points": [3, 6, 3],
         "encoder_in_channels": [256, 512, 1024]},
    ),
    "x": (
        {"hidden_sizes": [256, 512, 1024, 2048], "stem_channels": [3, 32, 64], "stage_in_channels": [64, 128, 512, 1024],
         "stage_mid_channels": [64, 128, 256, 512], "stage_out_channels": [128, 512, 1024, 2048],
         "stage_num_blocks": [1, 2, 5, 2], "stage_numb_of_layers": [6, 6, 6, 6], "use_learnable_affine_block": False},
        {"encoder_in_channels": [512, 1024, 2048], "encoder_hidden_dim": 384, "encoder_ffn_dim": 2048,
         "decoder_n_points": [3, 6, 3], "decoder_in_channels": [384, 384, 384], "decoder_layers": 6,
         "hidden_expansion": 1.0},
    ),
}  # fmt: skip
# RT-DETRv2 sizes (the rtdetr_v2_r*vd configs): ResNet backbone and head fields off the defaults (R50).
_RTDETRV2: dict[str, dict[str, Any]] = {
    "r18": {"backbone": {"hidden_sizes": [64, 128, 256, 512], "depths": [2, 2, 2, 2], "layer_type": "basic"},
            "encoder_in_channels": [128, 256, 512], "hidden_expansion": 0.5, "decoder_layers": 3},
    "r50": {},
}  # fmt: skip
# Text vocabularies of the open-vocabulary checkpoints (CLIP BPE, BERT WordPiece): the embedding
# tables are real size even though the offline tokenizer is small (ids stay within it).
_OWLV2_VOCAB = 49408
_BERT_VOCAB = 30522
GDINO_MAX_TEXT = 256


@dataclass
class DetectorBundle:
    """A loaded transformers detector.

    Attributes:
        spec: the registry entry.
        model: the torch model (eval mode, on ``device``).
        processor: image processor (closed set) or full processor with tokenizer (open vocabulary).
        arch: ``rf_detr``, ``d_fine``, ``rt_detr_v2``, ``owlv2`` or ``grounding_dino``.
        class_names: the model's classes (closed set); empty for open vocabulary.
        device: torch device string.
    """

    spec: ModelSpec
    model: Any
    processor: Any
    arch: str
    class_names: tuple[str, ...] = ()
    device: str = "cpu"
    dtype: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def open_vocabulary(self) -> bool:
        """True when the user types the classes."""
        return self.arch in ("owlv2", "grounding_dino")

    def detect(self, image: np.ndarray, timings: Timings, classes: Sequence[str] | None = None) -> Any:
        """Run the model once on an RGB uint8 image; return raw ``sv.Detections`` (``Detector``).

        Args:
            image: (H, W, 3) uint8 RGB.
            timings: receives preprocess / inference / postprocess times.
            classes: the classes to find (open vocabulary only; already parsed and capped).
        """
        if not image.flags.writeable:  # decoded images are read-only; torch wants writable memory
            image = image.copy()
        if self.open_vocabulary:
            if not classes:
                raise InputError("Type the classes to find, separated by commas (for example: book, mug, laptop).")
            if self.arch == "owlv2":
                return _detect_owlv2(self, image, list(classes), timings)
            return _detect_gdino(self, image, list(classes), timings)
        return _detect_closed(self, image, timings)

    # Batching (``core.batching``), closed-set detectors only: their inputs have one fixed size.
    def prepare(self, image: np.ndarray, timings: Timings) -> Any:
        """The input for one image, or ``None`` for open-vocabulary models (run alone)."""
        if self.open_vocabulary:
            return None
        return _prepare_closed(self, image if image.flags.writeable else image.copy(), timings)

    def forward_batch(self, inputs: list[Any]) -> list[Any]:
        """One pass for several images."""
        return _forward_closed(self, inputs)

    def finish(self, output: Any, size: tuple[int, int], timings: Timings) -> Any:
        """One image's detections."""
        return _finish_closed(self, output, size, timings)


_SIZES = {"rf_detr": _RFDETR, "d_fine": _DFINE, "rt_detr_v2": _RTDETRV2, "owlv2": {"base": None},
          "grounding_dino": {"tiny": None, "base": None}}  # fmt: skip


def variant_of(spec: ModelSpec) -> tuple[str, str]:
    """(architecture, size) from ``spec.variant`` ("arch:size").

    Raises:
        ModelUnavailable: an unknown architecture or size.
    """
    arch, _, size = spec.variant.partition(":")
    if size not in _SIZES.get(arch, {}):
        raise ModelUnavailable(spec.key, "load_failed", f"{spec.name}: unknown detector variant {spec.variant!r}.")
    return arch, size


def architecture(spec: ModelSpec, tiny: bool = False) -> Any:
    """The checkpoint's architecture (real size, or shrunken with ``tiny``), random weights."""
    arch, _ = variant_of(spec)
    return _model_class(arch)(offline_parts(spec, tiny)[0])


def load(spec: ModelSpec, settings: LoadSettings) -> DetectorBundle:
    """Load ``spec`` under ``settings`` (hub checkpoint, random real-size, or tiny)."""
    import torch

    arch, _ = variant_of(spec)
    dtype = getattr(torch, settings.dtype_name(spec))
    model_cls = _model_class(arch)
    if settings.weights == "hub":
        with hub_errors(spec):
            processor = _processor_class(arch).from_pretrained(spec.checkpoint, **pretrained_kwargs(spec))
            model = model_cls.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec), dtype=dtype)
    else:
        config, processor = offline_parts(spec, tiny=settings.weights == "tiny")
        torch.manual_seed(0)  # the same random weights in every process (a Ray replica and the app agree)
        model = model_cls(config).to(dtype)
    model = model.to(settings.device).eval()
    names: tuple[str, ...] = ()
    if arch not in ("owlv2", "grounding_dino"):
        id2label = model.config.id2label
        names = tuple(str(id2label.get(i, i)) for i in range(len(id2label)))
    return DetectorBundle(spec, model, processor, arch, names, settings.device, dtype)


def _model_class(arch: str) -> Any:
    import transformers as tf

    return {
        "rf_detr": tf.RfDetrForObjectDetection,
        "d_fine": tf.DFineForObjectDetection,
        "rt_detr_v2": tf.RTDetrV2ForObjectDetection,
        "owlv2": tf.Owlv2ForObjectDetection,
        "grounding_dino": tf.GroundingDinoForObjectDetection,
    }[arch]


def _processor_class(arch: str) -> Any:
    import transformers as tf

    return {
        "rf_detr": tf.RfDetrImageProcessor,  # hub checkpoints carry their own size
        "d_fine": tf.AutoImageProcessor,
        "rt_detr_v2": tf.AutoImageProcessor,
        "owlv2": tf.Owlv2Processor,
        "grounding_dino": tf.GroundingDinoProcessor,
    }[arch]


def _coco_labels(num: int = 80) -> dict[str, Any]:
    names = COCO_CLASSES[:num]
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def offline_parts(spec: ModelSpec, tiny: bool) -> tuple[Any, Any]:
    """(config, processor) built in code: real-size (``random``) or shrunken (``tiny``)."""
    import transformers as tf

    arch, size = variant_of(spec)
    if arch == "rf_detr":
        res, dec = _RFDETR[size]
        if tiny:
            res = 128
            backbone = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=res)
            backbone["out_features"] = ["stage1", "stage2", "stage3", "stage4"]
            head = dict(d_model=32, decoder_layers=1, decoder_self_attention_heads=2, decoder_cross_attention_heads=2)
            head.update(decoder_ffn_dim=64, num_queries=30, group_detr=1, intermediate_size=64, c2f_num_blocks=1)
        else:
            backbone = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, image_size=res)
            backbone["out_features"] = ["stage3", "stage6", "stage9", "stage12"]
            head = dict(decoder_layers=dec)
        backbone.update(model_type="rf_detr_dinov2", patch_size=16, num_register_tokens=0, num_windows=2)
        config = tf.RfDetrConfig(backbone_config=backbone, **head, **_coco_labels())
        # The default shortest-edge 800 crashes windowed attention: use the model's square size.
        return config, tf.RfDetrImageProcessor(size={"height": res, "width": res})

    if arch in ("d_fine", "rt_detr_v2"):
        res = 64 if tiny else 640
        processor = tf.RTDetrImageProcessor(size={"height": res, "width": res})
        if arch == "rt_detr_v2":
            kw: dict[str, Any] = {}
            if tiny:
                kw["backbone_config"] = tf.RTDetrResNetConfig(
                    embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], layer_type="basic",
                    out_features=["stage2", "stage3", "stage4"],
                )  # fmt: skip
                kw.update(encoder_in_channels=[16, 32, 64], **_tiny_rtdetr_head())
            else:
                fields = dict(_RTDETRV2[size])
                backbone = fields.pop("backbone", None)
                if backbone:
                    kw["backbone_config"] = tf.RTDetrResNetConfig(
                        embedding_size=64, out_features=["stage2", "stage3", "stage4"], **backbone
                    )
                kw.update(fields)
            return tf.RTDetrV2Config(**kw, **_coco_labels()), processor
        kw = {}
        if tiny:
            kw["backbone_config"] = tf.HGNetV2Config(
                stem_channels=[3, 8, 8], stage_in_channels=[8, 16, 32, 64], stage_mid_channels=[8, 8, 16, 16],
                stage_out_channels=[16, 32, 64, 128], stage_num_blocks=[1, 1, 1, 1],
                stage_numb_of_layers=[1, 1, 1, 1], out_features=["stage2", "stage3", "stage4"],
                hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
            )  # fmt: skip
            kw.update(encoder_in_channels=[32, 64, 128], **_tiny_rtdetr_head())
        else:
            backbone, head = _DFINE[size]
            backbone = {"embedding_size": 32, "layer_type": "basic", "use_learnable_affine_block": True,
                        "stage_downsample": [False, True, True, True], "stage_light_block": [False, False, True, True],
                        "stage_kernel_size": [3, 3, 5, 5], **backbone}  # fmt: skip
            stages = backbone.pop("out_indices", [2, 3, 4])
            kw["backbone_config"] = tf.HGNetV2Config(**backbone, out_features=[f"stage{i}" for i in stages])
            kw.update({"hidden_expansion": 1.0, "decoder_layers": 6, **head})
        return tf.DFineConfig(**kw, **_coco_labels()), processor

    if arch == "owlv2":
        tokenizer = clip_like_tokenizer()
        ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id}
        ids["eos_token_id"] = tokenizer.eos_token_id
        if tiny:
            res = 64
            text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
            vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
            extra = {"projection_dim": 32}
        else:
            res, text, vision, extra = 960, {"vocab_size": _OWLV2_VOCAB}, {}, {}
        text.setdefault("vocab_size", len(tokenizer))
        text.update(max_position_embeddings=16, **ids)
        vision.update(image_size=res, patch_size=16)
        config = tf.Owlv2Config(text_config=text, vision_config=vision, **extra)
        image_processor = tf.Owlv2ImageProcessor(size={"height": res, "width": res})
        return config, tf.Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)

    # grounding_dino
    tokenizer = bert_like_tokenizer()
    text = dict(model_type="bert", vocab_size=len(tokenizer) if tiny else _BERT_VOCAB,
                max_position_embeddings=GDINO_MAX_TEXT + 2)  # fmt: skip
    if tiny:
        text.update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
        backbone = tf.SwinConfig(
            embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, image_size=64,
            out_features=["stage2", "stage3", "stage4"],
        )  # fmt: skip
        head = dict(d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32)
        head.update(encoder_attention_heads=2, decoder_attention_heads=2, num_queries=20, num_feature_levels=4)
        processor_size = {"shortest_edge": 64, "longest_edge": 96}
    else:
        backbone = None
        if size == "base":
            backbone = tf.SwinConfig(
                embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12, image_size=384,
                out_features=["stage2", "stage3", "stage4"],
            )  # fmt: skip
        text.update(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
        head = {}
        processor_size = {"shortest_edge": 800, "longest_edge": 1333}
    config = tf.GroundingDinoConfig(backbone_config=backbone, text_config=text, max_text_len=GDINO_MAX_TEXT, **head)
    image_processor = tf.GroundingDinoImageProcessor(size=processor_size)
    return config, tf.GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)


def _tiny_rtdetr_head() -> dict[str, Any]:
    return dict(
        encoder_hidden_dim=32, encoder_ffn_dim=32, encoder_attention_heads=2, d_model=32,
        decoder_in_channels=[32, 32, 32], decoder_ffn_dim=32, decoder_attention_heads=2,
        decoder_layers=2, num_queries=30, num_denoising=0,
    )  # fmt: skip


# ----- offline tokenizers -------------------------------------------------------------------

_WORDS = (
    "a an the of and in on with cat dog person car mug cup book laptop bottle chair table phone "
    "bird horse sheep cow bus truck boat plane train bike rocket astronaut coffee plate spoon fork "
    "knife bowl tv clock vase plant window door bag hat shoe shirt tree sky road light sign"
)


def clip_like_tokenizer() -> Any:
    """A small byte-level BPE tokenizer shaped like CLIP's (what OWLv2's processor expects).

    ``<|endoftext|>`` gets the highest id: OWLv2 pools the text at ``argmax(input_ids)``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|pad|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([_WORDS] * 4, trainer=trainer)
    tok.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        model_max_length=16,
    )


def bert_like_tokenizer() -> Any:
    """A small uncased WordPiece tokenizer with BERT's ids for [CLS] 101, [SEP] 102, '.' 1012, '?' 1029.

    Grounding DINO hard-codes those four ids to split the prompt into phrases.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    fixed = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}
    pieces = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    pieces += [f"##{p}" for p in pieces] + list(",;:!'\"-()/&") + sorted(set(_WORDS.split()))
    vocab: dict[str, int] = {}
    it = iter(pieces)
    for i in range(1100):
        name = fixed.get(i) or next(it, None) or f"[unused{i}]"
        vocab[name] = i
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.BertProcessing(("[SEP]", 102), ("[CLS]", 101))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=GDINO_MAX_TEXT,
    )


# ----- running ------------------------------------------------------------------------------


def _to_device(batch: Any, bundle: DetectorBundle) -> dict[str, Any]:
    out = {}
    for k, v in batch.items():
        if hasattr(v, "to"):
            v = v.to(bundle.device)
            if v.is_floating_point():
                v = v.to(bundle.dtype)
        out[k] = v
    return out


def _detect_closed(bundle: DetectorBundle, image: np.ndarray, timings: Timings) -> Any:
    inputs = _prepare_closed(bundle, image, timings)
    with timings.stage("inference"):
        (output,) = _forward_closed(bundle, [inputs])
    return _finish_closed(bundle, output, image.shape[:2], timings)


def _prepare_closed(bundle: DetectorBundle, image: np.ndarray, timings: Timings) -> dict[str, Any]:
    """A closed-set detector's input for one image (batch size 1, on the model's device)."""
    with timings.stage("preprocess"):
        return _to_device(bundle.processor(images=image, device=bundle.device, return_tensors="pt"), bundle)


def _forward_closed(bundle: DetectorBundle, inputs: list[dict[str, Any]]) -> list[Any]:
    """One pass over same-shaped inputs; per input its (logits, boxes) rows as float32."""
    import torch

    with torch.inference_mode():
        batch = {k: torch.cat([i[k] for i in inputs]) for k in inputs[0]}
        outputs = bundle.model(**batch)
        logits, boxes = outputs.logits.float(), outputs.pred_boxes.float()
    return [(logits[i : i + 1], boxes[i : i + 1]) for i in range(len(inputs))]


def _finish_closed(bundle: DetectorBundle, output: Any, size: tuple[int, int], timings: Timings) -> Any:
    """One input's rows turned into detections in the image's pixels (``size`` = (H, W))."""
    from transformers.utils import ModelOutput

    h, w = size
    with timings.stage("postprocess"):
        kwargs: dict[str, Any] = {"threshold": RAW_FLOOR, "target_sizes": [(h, w)]}
        if bundle.arch == "rf_detr":
            kwargs["top_k"] = RAW_TOP_K
        logits, boxes = output
        outputs = ModelOutput(logits=logits, pred_boxes=boxes)
        res = bundle.processor.post_process_object_detection(outputs, **kwargs)[0]
        boxes = _clip(res["boxes"].cpu().numpy(), w, h)
        det = make_detections(boxes, res["scores"].cpu().numpy(), res["labels"].cpu().numpy(), bundle.class_names)
        return keep_top(det)


def _clip(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return boxes


def _detect_owlv2(bundle: DetectorBundle, image: np.ndarray, classes: list[str], timings: Timings) -> Any:
    import torch

    h, w = image.shape[:2]
    with timings.stage("preprocess"):
        batch = bundle.processor(
            text=[classes], images=image, return_tensors="pt", truncation=True, max_length=16, padding="max_length"
        )
        inputs = _to_device(batch, bundle)
    with timings.stage("inference"), torch.inference_mode():
        outputs = bundle.model(**inputs)
    with timings.stage("postprocess"):
        logits = outputs.logits[0].float()  # (queries, classes)
        probs = torch.sigmoid(logits)
        scores, labels = probs.max(dim=-1)
        # OWLv2 pads the image to a square (bottom/right): boxes are relative to that square.
        side = max(h, w)
        cx, cy, bw, bh = outputs.pred_boxes[0].float().unbind(-1)
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1) * side
        det = make_detections(
            _clip(boxes.cpu().numpy(), w, h), scores.cpu().numpy(), labels.cpu().numpy(), classes, {"open_vocabulary": True}
        )
        return keep_top(det)


def gdino_prompt(classes: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Grounding DINO's prompt ("cat. red mug.") and each class's character span in it."""
    text, spans = "", []
    for c in classes:
        name = c.lower()
        spans.append((len(text), len(text) + len(name)))
        text += name + ". "
    return text.strip(), spans


def _detect_gdino(bundle: DetectorBundle, image: np.ndarray, classes: list[str], timings: Timings) -> Any:
    import torch

    h, w = image.shape[:2]
    with timings.stage("preprocess"):
        text, spans = gdino_prompt(classes)
        batch = bundle.processor(images=image, text=text, return_tensors="pt", truncation=True, max_length=GDINO_MAX_TEXT)
        offsets = bundle.processor.tokenizer(
            text, return_offsets_mapping=True, truncation=True, max_length=GDINO_MAX_TEXT
        )["offset_mapping"]
        # Tokens of each class phrase: a class scores as its best token (tokens cut off by the
        # 256-token limit leave a class with none: it can never be found, so it is dropped).
        token_sets = [
            [i for i, (a, b) in enumerate(offsets) if b > a and a >= s and b <= e] for s, e in spans
        ]
        inputs = _to_device(batch, bundle)
    with timings.stage("inference"), torch.inference_mode():
        outputs = bundle.model(**inputs)
    with timings.stage("postprocess"):
        probs = torch.sigmoid(outputs.logits[0].float())  # (queries, max_text_len)
        cols = []
        for toks in token_sets:
            toks = [t for t in toks if t < probs.shape[1]]
            cols.append(probs[:, toks].max(dim=-1).values if toks else probs.new_zeros(probs.shape[0]))
        per_class = torch.stack(cols, dim=-1)
        scores, labels = per_class.max(dim=-1)
        cx, cy, bw, bh = outputs.pred_boxes[0].float().unbind(-1)
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1)
        boxes = boxes * torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
        meta = {"open_vocabulary": True, "dropped_classes": [c for c, t in zip(classes, token_sets, strict=True) if not t]}
        det = make_detections(_clip(boxes.cpu().numpy(), w, h), scores.cpu().numpy(), labels.cpu().numpy(), classes, meta)
        return keep_top(det)
