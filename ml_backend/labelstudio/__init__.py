"""Everything that speaks Label Studio: its API, label configs, task images, webhooks, seeding, export."""
