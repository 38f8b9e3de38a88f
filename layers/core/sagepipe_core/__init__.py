"""sagepipe core: the domain of the pipeline, shared by every Lambda through the core layer.

No pandas, numpy or sagemaker: stdlib and botocore, plus pydantic for the per-model config (``config``)
and Powertools for the pipeline handlers' wiring (``handler``). The predict function's slim layer has no
pydantic and no X-Ray SDK: the modules on its path (``predict``, ``schema``, ``naming``, ``aws``,
``errors``) import neither, nor ``handler`` (tests/unit/test_aws.py checks the import).

Modules:

- ``steps``: one function per pipeline step (start, validate, evaluate, register, approval, deploy);
  each Lambda handler is glue into one of them. ``records``: the typed records those steps pass
  through the state machine.
- ``events`` (trigger normalisation), ``config`` (the per-model config), ``dataset`` (CSV validation,
  quarantine and deterministic splits), ``training`` (the CreateTrainingJob / tuning requests),
  ``gate`` (the deploy decision), ``registry`` (model package groups and packages), ``approval``
  (the manual approval's task token), ``deploy`` (endpoint create/update and rollback alarms).
- ``predict`` (the inference API's logic) and ``schema`` (records checked against a model's
  ``schema.json``).
- ``aws`` (the ClientError classifier and the ``model.tar.gz`` member reader), ``errors`` (typed errors
  named like the ASL error names that catch them), ``naming`` (SageMaker / Step Functions naming rules),
  ``handler`` (Powertools Logger, Tracer and Metrics for the pipeline handlers).
"""

__version__ = "0.1.0"
