"""Pelvic-health assistant: domain logic shared by the Rasa server, the action server and the staff console."""
