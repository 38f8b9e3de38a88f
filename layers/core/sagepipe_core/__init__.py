"""sagepipe core: the domain of the pipeline, shared by every Lambda through the core layer.

Pure Python (stdlib only: no pandas, numpy or sagemaker) so that request-path functions import fast.
Modules: ``errors`` (typed errors named like the ASL error names that catch them), ``naming``
(SageMaker / Step Functions naming rules), ``events`` (trigger normalisation), ``config`` (per-model
config), ``dataset`` (CSV validation, quarantine and deterministic splits), ``training`` (the
CreateTrainingJob request), ``gate`` (the deploy decision), ``deploy`` (endpoint create/update) and
``notify`` (EventBridge notification shapes).
"""

__version__ = "0.1.0"
