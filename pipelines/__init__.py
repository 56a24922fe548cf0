"""Pipeline definitions for orchestrators that compile one: Kubeflow Pipelines v2, ``pipelines.kfp_pipeline``."""
