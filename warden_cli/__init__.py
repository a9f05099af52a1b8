"""The `warden` CLI: the operator's tool, outside the Lambda layer (`warden_cli.main`)."""
