"""The AWS adapters the domain code is handed: catalog (DynamoDB), audit (append-only), leases,
artifacts (S3), secrets (Secrets Manager), targets (SSM Parameter Store), recovery state, and the
cached boto3 clients they share."""
