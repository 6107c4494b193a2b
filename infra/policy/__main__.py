"""Serve the pool policies as a pulumi-policy pack (``pulumi up --policy-pack infra/policy``)."""

from pulumi_policy import PolicyPack

from infra.policy.pack import POLICIES

PolicyPack(name="govctl-pools", policies=POLICIES)
