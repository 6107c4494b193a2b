"""Deployments of the resource pools through Pulumi's Automation API."""
