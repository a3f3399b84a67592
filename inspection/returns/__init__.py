"""The returns domain: lifecycle, orders, photos, decisions, refunds, audit and webhooks."""
