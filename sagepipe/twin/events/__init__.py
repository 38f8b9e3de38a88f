"""The twin's EventBridge: rule targets delivered as AWS delivers them (``delivery``), schedule rules
fired (``scheduler``) and PutEvents' size quota (``api``)."""
