"""The bottom layer: model specs and the registry, the shared cache, the app context, devices,
Hub loading, errors, typed results, and decoded images with the safe decoder. Imports nothing
from ``families`` or ``tasks``."""
