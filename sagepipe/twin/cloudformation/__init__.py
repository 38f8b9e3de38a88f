"""The twin's CloudFormation: ``template.yaml`` read and resolved (``template``), deployed onto moto in
dependency order (``deploy``), and custom resources answered through their ResponseURL (``response``)."""
