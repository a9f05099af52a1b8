"""Warden's CDK constructs, one per concern: config (stages from cdk.json), storage, layers,
functions (the one place a Lambda is made, and its grants), nag (cdk-nag wiring), smoke (a one-task
state machine for Step Functions smoke tests), and stack (composition only)."""
