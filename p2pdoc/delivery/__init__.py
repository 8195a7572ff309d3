"""Delivery: outbox/inbox state machines, retry timing, signed receipts and status reports."""
