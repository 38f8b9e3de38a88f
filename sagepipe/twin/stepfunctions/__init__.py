"""The twin's Step Functions, on moto's ASL interpreter: the optimised SageMaker integration and AWS's
error names (``sagemaker``), and the execution status change events and StopExecution (``events``)."""
