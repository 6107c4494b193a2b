"""Departments' resource requests, quotas and reclamation (申请 → 审批 → 开通 → 配额 → 回收)."""
