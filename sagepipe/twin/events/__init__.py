"""The twin's EventBridge: rule targets delivered as AWS delivers them (``delivery``) and schedule rules
fired (``scheduler``)."""
