"""The pulumi-policy pack: the same checks as policies the engine can enforce (``__main__.py`` serves it)."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy

from infra.policy.checks import colocated_pools, missing_tags, public_data_tier, unencrypted_volume


def _resource_policy(name: str, description: str, check) -> ResourceValidationPolicy:  # noqa: ANN001
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        for v in check(args.resource_type, dict(args.props)):
            report(v, None)

    return ResourceValidationPolicy(name=name, description=description, validate=validate, enforcement_level=EnforcementLevel.MANDATORY)


def _colocation(args: StackValidationArgs, report: ReportViolation) -> None:
    for v in colocated_pools((r.resource_type, dict(r.props)) for r in args.resources):
        report(v, None)


POLICIES = [
    _resource_policy("mandatory-department-and-classification-tags", "Every resource carries department and classification tags.", missing_tags),
    _resource_policy("encrypted-volumes", "Volumes are encrypted at rest.", unencrypted_volume),
    _resource_policy("no-public-address-on-data-tier", "The data tier has no public address.", public_data_tier),
    StackValidationPolicy(name="backup-pool-not-colocated", description="The backup pool is placed apart from the primary.",
                          validate=_colocation, enforcement_level=EnforcementLevel.MANDATORY),  # fmt: skip
]
