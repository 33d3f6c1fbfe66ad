"""Everything about models and nothing about Gradio.

Importing this package is cheap: torch, transformers and other heavy libraries are imported
inside the functions that need them, so the app starts fast and nothing touches CUDA at import.
"""
