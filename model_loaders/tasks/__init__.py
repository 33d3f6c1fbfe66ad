"""The task layer: the only place that runs a model, plus what tasks share (agreement metrics,
structured output, the workflow pipeline, exports). Imports ``core`` and ``families``."""
