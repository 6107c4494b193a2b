"""The Pulumi program for the primary and backup resource pools."""
