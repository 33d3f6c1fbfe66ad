"""One adapter module per model family (SAM 2.1, Depth Anything V2, detectors, YOLO, Florence-2,
the chat VLMs, Gemini), with the offline configs and tokenizers their random/tiny builds need.
Imports only ``core``."""
