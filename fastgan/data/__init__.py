"""DALI pipelines, the GPU-resident dataset, fallbacks. Empty until the data work lands."""
