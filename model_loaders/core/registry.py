"""The registry: one frozen `ModelSpec` per model and one `Family` per model family.

The single source of truth: the Models tab, the pickers, the README table, the loaders and
the tests are all generated from ``REGISTRY`` and ``FAMILIES``. Add a model by adding one
entry here; add a family with one adapter module in ``model_loaders/families/`` plus its
``Family`` entry (which module runs it, and what its models can do by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.specs import ModelSpec, Task, Thresholds


@dataclass(frozen=True)
class Family:
    """A model family: the adapter that runs it and the capabilities its models share.

    Attributes:
        module: the adapter module (``None``: registered for its licence, never run here).
        caps: default capability fields of its specs (prompts, open_vocabulary, thresholds,
            grounding, depth_kind); a spec may override any of them.
        not_run: (short status, reason) for a family that is never run here.
    """

    module: str | None
    caps: Mapping[str, Any] = field(default_factory=dict)
    not_run: tuple[str, str] | None = None


_FAMILIES = "model_loaders.families."
# Thresholds of real-time closed-set detectors (the Detect tab's and Ultralytics' defaults).
CLOSED_SET = Thresholds(confidence=0.25, iou=0.7)

FAMILIES: Mapping[str, Family] = MappingProxyType({
    "sam2": Family(_FAMILIES + "sam2", {"prompts": ("points", "box")}),
    "depth_anything": Family(_FAMILIES + "depth_anything", {"depth_kind": "relative_inverse"}),
    "hf_detector": Family(_FAMILIES + "detectors", {"thresholds": CLOSED_SET}),
    # OWLv2 scores run low (the authors' demo shows boxes above 0.1) and it repeats boxes: stricter NMS.
    "zero_shot_detector": Family(_FAMILIES + "detectors", {"prompts": ("classes",), "open_vocabulary": True,
                                                            "thresholds": Thresholds(0.1, 0.3)}),
    "yolo": Family(_FAMILIES + "yolo", {"thresholds": CLOSED_SET}),
    # SAM 3: every instance of a typed concept, with masks. Its presence head calibrates scores:
    # its authors' demo keeps instances above 0.5.
    "sam3_tracker": Family(_FAMILIES + "sam3_tracker", {"prompts": ("points", "box")}),
    "sam3": Family(_FAMILIES + "sam3", {"prompts": ("classes", "box"), "open_vocabulary": True,
                                        "thresholds": Thresholds(0.5, 0.7)}),
    "florence2": Family(_FAMILIES + "florence2", {"prompts": ("task", "region", "classes"),
                                                  "open_vocabulary": True, "grounding": "florence_loc"}),
    "qwen2_5_vl": Family(_FAMILIES + "qwen_vl", {"prompts": ("question", "classes"), "open_vocabulary": True,
                                              "grounding": "qwen2_5_abs"}),
    "qwen3_vl": Family(_FAMILIES + "qwen_vl", {"prompts": ("question", "classes"), "open_vocabulary": True,
                                            "grounding": "qwen3_rel1000"}),
    "paligemma": Family(_FAMILIES + "paligemma", {"prompts": ("question", "classes"), "open_vocabulary": True,
                                             "grounding": "paligemma_loc"}),
    "mllama": Family(_FAMILIES + "mllama", {"prompts": ("question",)}),
    "smolvlm": Family(_FAMILIES + "smolvlm", {"prompts": ("question",)}),
    "gemini": Family(_FAMILIES + "gemini", {"prompts": ("question", "classes"), "open_vocabulary": True,
                                            "grounding": "gemini_yx1000"}),
    "cogvlm": Family(None, {"prompts": ("question",)}, not_run=(
        "needs its authors' code", "runs only with its own code from the Hub, which this app never executes.")),
    "rfdetr_plus": Family(None, {"thresholds": CLOSED_SET}, not_run=(
        "not run here", "ships only in Roboflow's rfdetr-plus package under its Platform Model License.")),
})  # fmt: skip

# Licence texts, named once.
APACHE = ("Apache-2.0", "https://www.apache.org/licenses/LICENSE-2.0")
MIT = ("MIT", "https://opensource.org/license/mit")
CC_BY_NC = ("CC-BY-NC-4.0", "https://creativecommons.org/licenses/by-nc/4.0/")
AGPL = ("AGPL-3.0", "https://www.gnu.org/licenses/agpl-3.0.html")
QWEN_RESEARCH = (
    "Qwen Research License",
    "https://huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct/blob/main/LICENSE",
)
QWEN = ("Qwen License", "https://huggingface.co/Qwen/Qwen2.5-VL-72B-Instruct/blob/main/LICENSE")
GEMMA = ("Gemma Terms of Use", "https://ai.google.dev/gemma/terms")
LLAMA32 = (
    "Llama 3.2 Community License",
    "https://huggingface.co/meta-llama/Llama-3.2-11B-Vision-Instruct/blob/main/LICENSE.txt",
)
GEMINI = ("Gemini API Terms (proprietary)", "https://ai.google.dev/gemini-api/terms")
RF_PML = ("Roboflow Platform Model License 1.0", "https://roboflow.com/platform-model-license")
COGVLM = ("CogVLM License", "https://huggingface.co/THUDM/cogvlm-chat-hf/blob/main/MODEL_LICENSE")
SAM_LICENSE = ("SAM License", "https://huggingface.co/facebook/sam3/blob/main/LICENSE")
COGVLM2 = (
    "CogVLM2 License (+ Llama 3 License)",
    "https://huggingface.co/THUDM/cogvlm2-llama3-chat-19B/blob/main/LICENSE",
)

SAM2_PAPER = "https://arxiv.org/abs/2408.00714"
DAV2_PAPER = "https://arxiv.org/abs/2406.09414"
RFDETR_PAPER = "https://arxiv.org/abs/2511.09554"
YOLO12_PAPER = "https://arxiv.org/abs/2502.12524"
FLORENCE2_PAPER = "https://arxiv.org/abs/2311.06242"
QWEN25VL_PAPER = "https://arxiv.org/abs/2502.13923"
PALIGEMMA2_PAPER = "https://arxiv.org/abs/2412.03555"
LLAMA3_PAPER = "https://arxiv.org/abs/2407.21783"
GEMINI25_PAPER = "https://arxiv.org/abs/2507.06261"

SAM3_PAPER = "https://arxiv.org/abs/2511.16719"

NC_NOTE = "Non-commercial use only."
SAM_COMMERCIAL_NOTE = ("SAM License: Meta's own terms (use, including commercial, under its conditions and "
                  "acceptable-use rules); read it before shipping.")  # fmt: skip
# What SAM 3's concept model and its click tracker share: one gated release, one licence.
SAM3_RELEASE: dict[str, object] = {
    "checkpoint": "facebook/sam3", "revision": None,
    "revision_note": "No commit could be verified offline yet; loads the latest.",
    "commercial": "conditions", "commercial_note": SAM_COMMERCIAL_NOTE, "gated": True, "paper": SAM3_PAPER,
}
GATED_NOTE = "Accept the terms on the model card and set HF_TOKEN."


def _spec(licence: tuple[str, str], **kw: object) -> ModelSpec:
    caps = dict(FAMILIES[str(kw["family"])].caps)  # KeyError: a spec of an unregistered family
    return ModelSpec(licence=licence[0], licence_url=licence[1], **{**caps, **kw})  # type: ignore[arg-type]


_SPECS: list[ModelSpec] = [
    # --- segmentation: SAM 2.1 through transformers' native Sam2Model -------------------------
    *[
        _spec(
            APACHE,
            key=f"sam2.1-hiera-{size}",
            name=f"SAM 2.1 Hiera {label}",
            family="sam2",
            tasks=("segment", "track"),
            checkpoint=f"facebook/sam2.1-hiera-{size}",
            revision=sha,
            params_m=params,
            commercial="yes",
            paper=SAM2_PAPER,
            cuda_dtype="float32",
            variant=size,
        )
        for size, label, params, sha in (
            ("tiny", "Tiny", 38.9, "de431c4043854a71d8101e17995dfe596bf101a5"),
            ("small", "Small", 46.0, "ee5bba1d82bb8749febdf90f45e84b687142ba03"),
            ("base-plus", "Base+", 80.8, "b7320756a13354e7530a63935656d35b2f91a290"),
            ("large", "Large", 224.4, "665f8e2ad61cf5f53d65644ff27c8ee525124610"),
        )
    ],
    # --- depth: Depth Anything V2 ---------------------------------------------------------------
    *[
        _spec(
            lic,
            key=f"depth-anything-v2-{size.lower()}",
            name=f"Depth Anything V2 {size}",
            family="depth_anything",
            tasks=("depth",),
            checkpoint=f"depth-anything/Depth-Anything-V2-{size}-hf",
            revision=sha,
            params_m=params,
            commercial=commercial,
            commercial_note=note,
            paper=DAV2_PAPER,
            cuda_dtype="float16",
            notes="Relative inverse depth (disparity): larger is nearer, unitless.",
            variant=size.lower(),
        )
        for size, params, lic, commercial, note, sha in (
            ("Small", 24.8, APACHE, "yes", "", "5426e4f0f36572d16453bbda7a8389317b1bef99"),
            ("Base", 97.5, CC_BY_NC, "no", NC_NOTE, "b1958afc87fb45a9e3746cb387596094de553ed8"),
            ("Large", 335.3, CC_BY_NC, "no", NC_NOTE, "7581137eff8d4e94f6e796d3baea0e9fa79b22d2"),
        )
    ],
    *[
        _spec(
            APACHE,
            key=f"depth-anything-v2-metric-{scene.lower()}-small",
            name=f"Depth Anything V2 Metric {scene} Small",
            family="depth_anything",
            tasks=("depth",),
            checkpoint=f"depth-anything/Depth-Anything-V2-Metric-{scene}-Small-hf",
            revision=sha,
            params_m=24.8,
            commercial="yes",
            paper=DAV2_PAPER,
            cuda_dtype="float16",
            notes=f"Metric depth in metres ({scene.lower()} scenes, max {depth_max} m).",
            variant="small",
            depth_kind="metric",
            max_depth_m=float(depth_max),
        )
        for scene, depth_max, sha in (
            ("Indoor", 20, "8078d68a9c75a972131914f6afd0c1723be0da7f"),
            ("Outdoor", 80, "fd2c22027eaf20374204f14099b8341e1925ad39"),
        )
    ],
    # --- detection: RF-DETR through transformers ----------------------------------------------
    *[
        _spec(
            APACHE,
            key=f"rf-detr-{size}",
            name=f"RF-DETR {size.capitalize()}",
            family="hf_detector",
            tasks=("detect",),
            checkpoint=f"Roboflow/rf-detr-{size}",
            revision=sha,
            params_m=params,
            commercial="yes",
            paper=RFDETR_PAPER,
            cuda_dtype="float32",
            variant=f"rf_detr:{size}",
        )
        for size, params, sha in (
            ("nano", 30.5, "9f201577d9415f0378084748d27e68586e6b3600"),
            ("medium", 33.7, "1b5b672408f86dd38e05dd3cf3f2e0834e545a59"),
            ("large", 33.9, "f62f7dd5252b61097cbace33886045816dadbde9"),
        )
    ],
    *[
        _spec(
            RF_PML,
            key=f"rf-detr-{size}",
            name=f"RF-DETR {label}",
            family="rfdetr_plus",
            tasks=("detect",),
            checkpoint=f"rf-detr-{size}",
            revision=None,
            revision_note="Distributed only through Roboflow's rfdetr-plus package, not the Hub.",
            params_m=params,
            commercial="conditions",
            commercial_note="Roboflow Platform Model License: commercial use needs a Roboflow plan.",
            paper=RFDETR_PAPER,
            variant=f"rf_detr:{size}",
        )
        for size, label, params in (("xlarge", "XLarge", 126.4), ("2xlarge", "2XLarge", 126.9))
    ],
    # --- detection: other transformers real-time detectors (Apache-2.0) ------------------------
    *[
        _spec(
            APACHE,
            key=key,
            name=name,
            family="hf_detector",
            tasks=("detect",),
            checkpoint=ckpt,
            revision=sha,
            params_m=params,
            commercial="yes",
            paper=paper,
            cuda_dtype="float32",
            variant=variant,
        )
        for key, name, ckpt, sha, params, paper, variant in (
            (
                "d-fine-nano",
                "D-FINE Nano",
                "ustc-community/dfine-nano-coco",
                "066438d3d8f0da137a37b38fdf3368fd4afceced",
                3.8,
                "https://arxiv.org/abs/2410.13842",
                "d_fine:n",
            ),
            (
                "d-fine-small",
                "D-FINE Small",
                "ustc-community/dfine-small-coco",
                "f79e65b5fbb33ceb9d3ebba042955d7410c608f8",
                10.3,
                "https://arxiv.org/abs/2410.13842",
                "d_fine:s",
            ),
            (
                "d-fine-xlarge",
                "D-FINE XLarge",
                "ustc-community/dfine-xlarge-coco",
                "ea4f6be7350bbe3c199ec6febc74168346cb5a68",
                62.0,
                "https://arxiv.org/abs/2410.13842",
                "d_fine:x",
            ),
            (
                "rt-detrv2-r18",
                "RT-DETRv2 R18",
                "PekingU/rtdetr_v2_r18vd",
                "5650961749fa93567c0d46fc7f43ea4f9e914107",
                20.0,
                "https://arxiv.org/abs/2407.17140",
                "rt_detr_v2:r18",
            ),
            (
                "rt-detrv2-r50",
                "RT-DETRv2 R50",
                "PekingU/rtdetr_v2_r50vd",
                "282494075698cab9faa1096ae26856890030c817",
                43.0,
                "https://arxiv.org/abs/2407.17140",
                "rt_detr_v2:r50",
            ),
        )
    ],
    # --- open-vocabulary detection: the user types the classes --------------------------------
    *[
        _spec(
            APACHE,
            key=key,
            name=name,
            family="zero_shot_detector",
            tasks=("detect",),
            checkpoint=ckpt,
            revision=sha,
            params_m=params,
            commercial="yes",
            paper=paper,
            cuda_dtype="float32",
            notes="Open vocabulary: type the classes to find.",
            variant=variant,
            **({"thresholds": Thresholds(0.35, 0.7)} if variant.startswith("grounding_dino") else {}),
        )
        for key, name, ckpt, sha, params, paper, variant in (
            (
                "owlv2-base",
                "OWLv2 Base (ensemble)",
                "google/owlv2-base-patch16-ensemble",
                "cfd3195ba4ea9592eec887ded089f4c08eff231d",
                155.0,
                "https://arxiv.org/abs/2306.09683",
                "owlv2:base",
            ),
            (
                "grounding-dino-tiny",
                "Grounding DINO Tiny",
                "IDEA-Research/grounding-dino-tiny",
                "a2bb814dd30d776dcf7e30523b00659f4f141c71",
                172.0,
                "https://arxiv.org/abs/2303.05499",
                "grounding_dino:tiny",
            ),
            (
                "grounding-dino-base",
                "Grounding DINO Base",
                "IDEA-Research/grounding-dino-base",
                "12bdfa3120f3e7ec7b434d90674b3396eccf88eb",
                233.0,
                "https://arxiv.org/abs/2303.05499",
                "grounding_dino:base",
            ),
        )
    ],
    # --- concept segmentation: SAM 3 finds every instance of a typed concept, with masks ---------
    _spec(
        SAM_LICENSE,
        key="sam3",
        name="SAM 3",
        family="sam3",
        tasks=("detect", "track"),  # track: by words (the video model: detector + tracker)
        params_m=840.4,
        **SAM3_RELEASE,
        notes="Type concepts (e.g. book, mug): every instance comes back as a mask, in images and videos. "
        + GATED_NOTE,
    ),
    _spec(
        SAM_LICENSE,
        key="sam3-tracker",
        name="SAM 3 tracker (clicks)",
        family="sam3_tracker",
        tasks=("segment",),
        params_m=458.3,
        **SAM3_RELEASE,
        notes="SAM 2.1's clicks and boxes on SAM 3's image encoder (the tracker part of the SAM 3 release). "
        + GATED_NOTE,
    ),
    # --- detection: YOLOv12 through the optional ultralytics extra (AGPL-3.0) ------------------
    *[
        _spec(
            AGPL,
            key=f"yolov12{size}",
            name=f"YOLOv12-{size.upper()}",
            family="yolo",
            tasks=("detect",),
            checkpoint=f"yolo12{size}.pt",
            revision="v8.4.0",
            revision_note="Ultralytics release asset tag (weights are not on the Hugging Face Hub).",
            params_m=params,
            commercial="conditions",
            commercial_note="AGPL-3.0: serving it obliges you to publish your source; "
            "otherwise an Ultralytics Enterprise licence.",
            paper=YOLO12_PAPER,
            extra="yolo",
            extra_module="ultralytics",
            cuda_dtype="float32",
            variant=size,
        )
        for size, params in (("n", 2.6), ("s", 9.3), ("m", 20.2), ("l", 26.4), ("x", 59.1))
    ],
    # --- VLMs ---------------------------------------------------------------------------------
    *[
        _spec(
            MIT,
            key=f"florence-2-{size.lower()}",
            name=f"Florence-2 {size}",
            family="florence2",
            tasks=("ask", "detect"),
            checkpoint=f"florence-community/Florence-2-{size}",
            revision=sha,
            params_m=params,
            commercial="yes",
            paper=FLORENCE2_PAPER,
            cuda_dtype="float16",
            variant=size.lower(),
        )
        for size, params, sha in (
            ("Base", 230.0, "00921df66db728a9ceb750f5eca43e5c203a2051"),
            ("Large", 770.0, "4271c66b88cdbc05735372ec13b2360108de5317"),
        )
    ],
    *[
        _spec(
            lic,
            key=f"qwen2.5-vl-{size.lower()}",
            name=f"Qwen2.5-VL {size} Instruct",
            family="qwen2_5_vl",
            tasks=("ask", "detect"),
            checkpoint=f"Qwen/Qwen2.5-VL-{size}-Instruct",
            revision=sha,
            params_m=params,
            commercial=commercial,
            commercial_note=note,
            paper=QWEN25VL_PAPER,
            variant=size.lower(),
        )
        for size, params, lic, commercial, note, sha in (
            (
                "3B",
                3750.0,
                QWEN_RESEARCH,
                "no",
                "Qwen Research License: non-commercial use only.",
                "66285546d2b821cf421d4f5eb2576359d3770cd3",
            ),
            ("7B", 8290.0, APACHE, "yes", "", "cc594898137f460bfe9f0759e9844b3ce807cfb5"),
            (
                "72B",
                73400.0,
                QWEN,
                "conditions",
                "Qwen License: commercial use allowed below 100 million monthly active users.",
                "89c86200743eec961a297729e7990e8f2ddbc4c5",
            ),
        )
    ],
    *[
        _spec(
            GEMMA,
            key=f"paligemma2-{size.lower()}-mix-448",
            name=f"PaliGemma 2 {size} mix 448",
            family="paligemma",
            tasks=("ask", "detect"),
            checkpoint=f"google/paligemma2-{size.lower()}-mix-448",
            revision=sha,
            revision_note="" if sha else "No commit could be verified offline yet; loads the latest.",
            params_m=params,
            commercial="conditions",
            commercial_note="Gemma Terms of Use: commercial use allowed under its prohibited-use policy.",
            gated=True,
            paper=PALIGEMMA2_PAPER,
            notes=GATED_NOTE,
            variant=size.lower(),
        )
        for size, params, sha in (
            ("3B", 3030.0, "1406c92ec87d32cc6b983239278901b904ba7a51"),
            ("10B", 9660.0, "b26d16fb4251090ba4a4aa5af9fca1f8248ed5b6"),
            ("28B", 27650.0, None),
        )
    ],
    *[
        _spec(
            LLAMA32,
            key=f"llama-3.2-{size.lower()}-vision-instruct",
            name=f"Llama 3.2 {size} Vision Instruct",
            family="mllama",
            tasks=("ask",),
            checkpoint=f"meta-llama/Llama-3.2-{size}-Vision-Instruct",
            revision=sha,
            params_m=params,
            commercial="conditions",
            commercial_note="Llama 3.2 Community License: commercial use below 700 million monthly "
            "active users; multimodal rights not granted to EU-domiciled entities.",
            gated=True,
            paper=LLAMA3_PAPER,
            notes=GATED_NOTE,
            variant=size.lower(),
        )
        for size, params, sha in (
            ("11B", 10670.0, "9eb2daaa8597bf192a8b0e73f848f3a102794df5"),
            ("90B", 88600.0, "ec79ddbe5c61f433eb855f4007bb6cb158ad3b35"),
        )
    ],
    # Small VLMs that answer usefully on a CPU.
    _spec(
        APACHE,
        key="smolvlm-256m-instruct",
        name="SmolVLM 256M Instruct",
        family="smolvlm",
        tasks=("ask",),
        checkpoint="HuggingFaceTB/SmolVLM-256M-Instruct",
        revision="7e3e67edbbed1bf9888184d9df282b700a323964",
        params_m=256.0,
        commercial="yes",
        paper="https://arxiv.org/abs/2504.05299",
        variant="256m",
    ),
    _spec(
        APACHE,
        key="smolvlm-500m-instruct",
        name="SmolVLM 500M Instruct",
        family="smolvlm",
        tasks=("ask",),
        checkpoint="HuggingFaceTB/SmolVLM-500M-Instruct",
        revision="a7da5b986cb59b408707209984f360a5f4ad7e47",
        params_m=507.0,
        commercial="yes",
        paper="https://arxiv.org/abs/2504.05299",
        variant="500m",
    ),
    _spec(
        APACHE,
        key="qwen3-vl-2b",
        name="Qwen3-VL 2B Instruct",
        family="qwen3_vl",
        tasks=("ask", "detect"),
        checkpoint="Qwen/Qwen3-VL-2B-Instruct",
        revision="89644892e4d85e24eaac8bacfd4f463576704203",
        params_m=2130.0,
        commercial="yes",
        paper="https://arxiv.org/abs/2511.21631",
        variant="2b",
    ),
    *[
        _spec(
            GEMINI,
            key=f"gemini-2.5-{variant}",
            name=f"Gemini 2.5 {label}",
            family="gemini",
            tasks=("ask", "detect"),
            checkpoint=None,
            revision=None,
            params_m=None,
            commercial="conditions",
            commercial_note="Paid API under Google's terms; images are sent to Google.",
            paper=GEMINI25_PAPER,
            extra="gemini",
            extra_module="google.genai",
            env_key="GEMINI_API_KEY",
            notes=f"API model id gemini-2.5-{variant}; runs on Google's servers.",
            variant=f"gemini-2.5-{variant}",
        )
        for variant, label in (("pro", "Pro"), ("flash", "Flash"), ("flash-lite", "Flash-Lite"))
    ],
    _spec(
        COGVLM,
        key="cogvlm-chat",
        name="CogVLM Chat 17B",
        family="cogvlm",
        tasks=("ask",),
        checkpoint="THUDM/cogvlm-chat-hf",
        revision="e29dc3ba206d524bf8efbfc60d80fc4556ab0e3c",
        params_m=17000.0,
        commercial="conditions",
        commercial_note="Free for academic research; commercial use after registration.",
        paper="https://arxiv.org/abs/2311.03079",
        needs_remote_code=True,
        notes="Runs only with its authors' own code from the Hub, which this app does not run.",
    ),
    _spec(
        COGVLM2,
        key="cogvlm2-llama3-chat-19b",
        name="CogVLM2 Llama3 Chat 19B",
        family="cogvlm",
        tasks=("ask",),
        checkpoint="THUDM/cogvlm2-llama3-chat-19B",
        revision="e3c7deb06295c5f0dc4f91ae2752552815fb8e14",
        params_m=19000.0,
        commercial="conditions",
        commercial_note="CogVLM2 License plus the Llama 3 License (700M MAU limit).",
        paper="https://arxiv.org/abs/2408.16500",
        needs_remote_code=True,
        notes="Runs only with its authors' own code from the Hub, which this app does not run.",
    ),
]


def _build(specs: Iterable[ModelSpec]) -> MappingProxyType[str, ModelSpec]:
    table: dict[str, ModelSpec] = {}
    for spec in specs:
        if spec.key in table:
            raise ValueError(f"duplicate model key {spec.key!r}")
        table[spec.key] = spec
    return MappingProxyType(table)


REGISTRY: MappingProxyType[str, ModelSpec] = _build(_SPECS)

# The model each task starts with: small, permissive and quick on a CPU.
DEFAULTS: dict[Task, str] = {
    "segment": "sam2.1-hiera-tiny",
    "depth": "depth-anything-v2-small",
    "detect": "rf-detr-medium",
    "ask": "florence-2-base",
}


# The Workflow's first models: an open-vocabulary detector and an Apache-2.0 VLM that answers in
# JSON and is small enough for a CPU.
WORKFLOW_DEFAULTS: dict[Task, str] = {"detect": "owlv2-base", "ask": "qwen3-vl-2b"}

# Kept ready on a ZeroGPU Space (placed on `cuda` at start-up, so ZeroGPU packs them): the model
# each tab opens with, ~5 GB in bf16, far within the 48 GB of a "large" slice. Any other model
# loads on demand inside its GPU call (slower; the timing line says so). VP_PRELOAD overrides it.
ZEROGPU_PRELOAD: tuple[str, ...] = tuple(dict.fromkeys([*DEFAULTS.values(), *WORKFLOW_DEFAULTS.values()]))


def get_spec(key: str) -> ModelSpec:
    """Return the spec for ``key``.

    Raises:
        ModelUnavailable: with kind ``unknown_model`` for a key not in the registry.
    """
    try:
        return REGISTRY[key]
    except (KeyError, TypeError):
        raise ModelUnavailable(str(key)[:80], "unknown_model", f"Unknown model: {str(key)[:80]!r}.") from None


def specs_for_task(task: Task) -> list[ModelSpec]:
    """Models that can do ``task``, home-task models first, in registry order."""
    home = [s for s in REGISTRY.values() if s.task == task]
    other = [s for s in REGISTRY.values() if task in s.tasks and s.task != task]
    return home + other
