"""Policies for the pools: the checks, the pulumi-policy pack built from them, and a transform."""
