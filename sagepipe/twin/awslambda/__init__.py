"""The twin's Lambda: each function's real handler in warm worker processes (``runtime`` starts and
drives ``worker``, the stand-in for Lambda's Python runtime interface client); ``api`` routes moto's
Invoke to them and applies Lambda's payload quotas."""
