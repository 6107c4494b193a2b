"""Notifications (通知): new high and critical alerts, requests waiting for approval, break-glass use, RPO breaches,
failed jobs and report delivery failures go to e-mail (per-person subscriptions) and a webhook (generic JSON or a
work-chat bot's markdown); what nobody acknowledges within N minutes escalates to a second person."""
