"""Ansible playbooks run through ansible-runner."""
