"""What a stage and a target may say: one model per concern, on one shared base (`config.base`).

`target` (Target, Engine, Schedules, RecoveryConfig, RdsRef), `stage` (StageConfig), `retention`,
`backup`, `health` (thresholds, required schema, licence), `monitoring`, `network` (VPC and TLS),
`protection` (Object Lock, replication), `rotation`, `operations` (remediation, maintenance),
`schedule` (schedule expressions), `credentials` (the shape of a target's secret).
"""
