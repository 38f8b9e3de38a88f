"""The twin's SageMaker: training jobs as local processes (``training``), endpoints as local model servers
(``hosting``, ``model_server``), hyperparameter tuning (``tuning``) and the wire patches of moto's
SageMaker and SageMaker Runtime responses (``api``)."""
