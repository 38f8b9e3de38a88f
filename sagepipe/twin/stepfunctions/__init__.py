"""The twin's Step Functions, on moto's ASL interpreter: JSONata and serialised parses (``asl``), the
optimised SageMaker integration and AWS's error names (``sagemaker``), the execution status change events
and StopExecution (``events``), the terminal errors and history quota and pages (``quotas``), and task
clients signed as the execution's role (``credentials``)."""
